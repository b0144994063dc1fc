"""Start-up cost of the commands a researcher runs most: wall time and peak memory, several runs.

    python benchmarks/cli_bench.py                 # 5 runs each
    python benchmarks/cli_bench.py --runs 10

`xai-lab study validate studies/demo.toml` reads and checks a design; it must not load torch,
Captum or the database layer (the goal in the architecture issue: under 1 s). `xai-lab --help`
is the floor: Python plus the argument parser. Each command runs in a fresh process, as a user
runs it; the peak resident memory is the child's, read from `resource.getrusage`.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "xai-lab --help": ["--help"],
    "xai-lab study validate studies/demo.toml": ["study", "validate", "studies/demo.toml"],
}
LOADED_PROBE = ("import sys; sys.argv = ['xai-lab', 'study', 'validate', 'studies/demo.toml']; "
                "from xai_lab.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
                "print(sorted(m for m in ('torch', 'captum', 'sqlalchemy', 'scipy', 'numpy') if m in sys.modules))")


def time_command(arguments: list[str], runs: int) -> tuple[list[float], int]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "xai_lab.cli", *arguments], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        times.append(time.perf_counter() - start)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return times, peak_kib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"{'command':45} {'median s':>9} {'max s':>7} {'peak MB':>8}")
    for name, arguments in COMMANDS.items():
        times, peak_kib = time_command(arguments, args.runs)
        print(f"{name:45} {statistics.median(times):9.2f} {max(times):7.2f} {peak_kib / 1024:8.0f}")
    loaded = subprocess.run([sys.executable, "-c", LOADED_PROBE], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip().splitlines()[-1]
    print(f"heavy modules loaded by study validate: {loaded}")


if __name__ == "__main__":
    main()
