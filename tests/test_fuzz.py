"""The coverage-guided fuzzer (atheris) runs for a bounded time in CI and finds nothing."""

from __future__ import annotations

import os
import subprocess

from helpers import ROOT


def test_fuzzing_the_front_matter_reader_finds_no_crash(tmp_path):
    seconds = os.environ.get("SYNDICATOR_FUZZ_SECONDS", "30")
    result = subprocess.run(["bash", str(ROOT / "scripts" / "fuzz.sh"), seconds], capture_output=True, text=True,
                            env={**os.environ, "FUZZ_ARTIFACTS": f"{tmp_path}/"}, timeout=int(seconds) + 120)
    crashes = list(tmp_path.glob("crash-*"))
    assert result.returncode == 0 and not crashes, result.stderr[-3000:]
    assert "Done" in result.stderr and "runs in" in result.stderr
