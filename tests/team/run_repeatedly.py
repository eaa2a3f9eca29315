"""Run one test again and again, to show it is not flaky: `python tests/team/run_repeatedly.py TEST_ID --times 20`.

Outside `make test` (the schedules walk-through takes ~1.5-2 minutes a run). Each run is its own pytest process (a
fresh session: its own team servers), one at a time; each result is appended to `--out` (JSON lines) as it
completes, so an interrupted series carries on where it stopped (rows of the same test id already there count).
Exit 0 when the last `--times` runs of the test id all passed. The count and the file go in the issue's notes.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("test_id", help="e.g. tests/team/test_schedules.py::test_serve_runs_the_schedule_then_...")
    parser.add_argument("--times", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "team" / "out" / "repeated.jsonl")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    mine = [r for r in done if r["test"] == args.test_id]
    while len(mine) < args.times or not all(r["passed"] for r in mine[-args.times:]):
        if mine and not mine[-1]["passed"]:
            print(f"run {len(mine)} failed: see {args.out}; starting a new series", file=sys.stderr)
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", args.test_id],
                                cwd=ROOT, capture_output=True, text=True)
        row = {"test": args.test_id, "run": len(mine) + 1, "passed": result.returncode == 0,
               "seconds": round(time.monotonic() - started, 1),
               "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
               "tail": "" if result.returncode == 0 else (result.stdout + result.stderr)[-4000:]}
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        mine.append(row)
        streak = next((i for i, r in enumerate(reversed(mine)) if not r["passed"]), len(mine))
        print(f"run {row['run']}: {'passed' if row['passed'] else 'FAILED'} in {row['seconds']} s "
              f"({streak} in a row)", flush=True)
        if len(mine) >= 3 * args.times:   # a series that keeps failing: stop and look
            return 1
    print(f"{args.times} runs in a row passed ({args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
