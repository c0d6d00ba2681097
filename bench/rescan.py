"""No-change rescans against bare walks, interleaved, in one process: `python bench/rescan.py CONTENT CACHE_DIR`.

Run by run.py after the serve phase, on the parse cache that phase left. It starts as a worker does
(warm, from the cache), then alternates a bare os.scandir + stat walk (harness.walk) with a rescan
(Rescanner.run_once, the job each worker runs; its scan time is what /status reports) and prints both
lists of seconds as JSON. Alternating cancels drift in the machine's speed, which on this VM moves a
walk by up to a third from minute to minute.
"""

from __future__ import annotations

import json
import sys
import time

from harness import walk

from syndicator.config import Settings
from syndicator.scheduler import Rescanner
from syndicator.snapshot import Publisher


def main(content: str, cache_dir: str, rounds: int = 5) -> None:
    """Warm start, then `rounds` walks and no-change rescans in turn; their seconds as JSON on stdout."""
    publisher = Publisher()
    rescanner = Rescanner(Settings(content=content, cache_dir=cache_dir, workers=2), publisher)
    if not rescanner.run_once():
        raise SystemExit("the warm start published nothing")
    if rescanner.scanner.parse_count:
        raise SystemExit(f"not a warm start: {rescanner.scanner.parse_count} files parsed")
    walks, rescans = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        walk(content)
        walks.append(time.perf_counter() - started)
        if rescanner.run_once():
            raise SystemExit("a no-change rescan published a new snapshot: the content changed")
        rescans.append(publisher.scan_seconds)
    print(json.dumps({"walk": walks, "rescan": rescans}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
