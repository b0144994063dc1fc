"""What a recruitment panel's arrival costs: enrolling by panel id, and a panel id's second visit,
against enrolling through the shared code (SQLite, the test suite's small study).

    python benchmarks/recruitment_bench.py [--n 200]

Reported: milliseconds per arrival (median of 5 batches of N) and the ratios to a code enrolment. A
panel arrival also derives its token (HMAC) and writes the panel id apart; a second visit counts the
visit and resumes. Raw rows go to benchmarks/results/recruitment_bench.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="arrivals per batch (default 200)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        os.environ["XAI_LAB_HOME"] = str(home)
        from store_bench import prepared_study
        from timing import median_seconds

        from xai_lab.study.cases import load_case_set
        from xai_lab.study.design_file import load_design
        from xai_lab.study.recruitment import PanelArrival
        from xai_lab.study.service import StudyService

        design = load_design(prepared_study(home))
        service = StudyService.open(design, load_case_set(design), url=f"sqlite:///{home}/bench.db")
        ids = itertools.count()
        batches: list[list[PanelArrival]] = []

        def code_batch() -> None:
            for _ in range(args.n):
                service.enrol(via="code")

        def panel_batch() -> None:
            batch = [PanelArrival(f"pid{next(ids)}", {"PROLIFIC_PID": "x"}) for _ in range(args.n)]
            batches.append(batch)
            for arrival in batch:
                service.enrol_from_panel(arrival)

        def second_visits() -> None:
            for arrival in batches[0]:
                service.enrol_from_panel(arrival)

        rows = {name: 1000 * median_seconds(run, repeats=5) / args.n
                for name, run in (("code enrolment", code_batch), ("panel enrolment", panel_batch),
                                  ("panel second visit", second_visits))}
    base = rows["code enrolment"]
    for name, ms in rows.items():
        print(f"{name:20s} {ms:7.2f} ms per arrival   x{ms / base:.2f}")
    out = REPO / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "recruitment_bench.json").write_text(json.dumps({"n": args.n, "ms_per_arrival": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
