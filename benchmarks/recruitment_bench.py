"""What a recruitment panel's arrival costs: enrolling by panel id, and a panel id's second visit,
against enrolling through the shared code (SQLite, the test suite's small study with Prolific's
[recruitment] preset).

    python benchmarks/recruitment_bench.py [--n 200]

Reported: milliseconds per arrival (median of 5 batches of N, after a warm-up batch) and the ratio
to a code enrolment. A panel arrival also derives its token (HMAC of the panel id) and writes the
panel id apart from the answers; a second visit counts the visit and resumes. Raw numbers go to
benchmarks/results/recruitment_bench.json.
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



def measure(n: int, home: Path) -> dict[str, float]:
    from store_bench import prepared_study
    from support.panel_site import PROLIFIC_RECRUITMENT
    from timing import median_seconds

    from xai_lab.store.database import open_database
    from xai_lab.study.cases import load_case_set
    from xai_lab.study.design_file import load_design
    from xai_lab.study.recruitment import PanelArrival, panel_arrival
    from xai_lab.study.service import StudyService

    design = load_design(prepared_study(home, PROLIFIC_RECRUITMENT, study_id="panel", arms='["verify", "rely"]', n=3,
                                        blocks="[2]"))
    service = StudyService(open_database(), design, load_case_set(design))
    ids = itertools.count()
    first_batch: list[PanelArrival] = []

    def code_batch() -> None:
        for _ in range(n):
            service.enrol(via="code")

    def panel_batch() -> None:
        # read from a link's parameters as the page does (Prolific ids are 24 hex digits)
        batch = [panel_arrival(design, {"PROLIFIC_PID": f"5f{next(ids):022x}", "STUDY_ID": "s", "SESSION_ID": "x"})
                 for _ in range(n)]
        if not first_batch:
            first_batch.extend(batch)
        for arrival in batch:
            token, enrolled = service.enrol_from_panel(arrival)
            assert enrolled, "a new panel id must enrol"

    def second_visits() -> None:
        for arrival in first_batch:
            token, enrolled = service.enrol_from_panel(arrival)
            assert not enrolled, "a panel id's second visit must resume"

    return {name: 1000 * median_seconds(run, repeats=5) / n
            for name, run in (("code enrolment", code_batch), ("panel enrolment", panel_batch),
                              ("panel second visit", second_visits))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="arrivals per batch (default 200)")
    args = parser.parse_args()
    if args.n < 1:
        parser.error("--n must be at least 1")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["XAI_LAB_HOME"] = folder
        os.environ.pop("XAI_LAB_DATABASE_URL", None)  # the lab's own SQLite file in the temporary home
        rows = measure(args.n, Path(folder))
    base = rows["code enrolment"]
    for name, ms in rows.items():
        print(f"{name:20s} {ms:7.2f} ms per arrival   x{ms / base:.2f} of a code enrolment")
    out = REPO / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "recruitment_bench.json").write_text(json.dumps({"n": args.n, "ms_per_arrival": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
