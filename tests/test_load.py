"""The load test (bench/load.py), short and small, so CI exercises it: real gunicorn, readers in every
format with and without gzip and validators, a writer changing the content, and every check of the script
(no 5xx, no malformed feed, ETags that belong to their bodies, flat memory, convergence)."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT


def test_load_script_passes_a_short_run(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load.py"), "--items", "300", "--topics", "10", "--seconds", "15",
         "--clients", "4", "--work", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-5000:]
    assert "| result" in report and "PASS" in report
    assert "| malformed documents" in report and "| ETag mismatches" in report
    # The writer really changed things while the readers read, and the readers saw it.
    versions = next(line for line in report.splitlines() if "versions of /feeds/all.* seen" in line)
    assert int(versions.split("|")[2].strip().replace(",", "")) > 1, versions
