"""Study store throughput: submits per second on SQLite and PostgreSQL, 1 and 8 writers.

    python benchmarks/store_bench.py                         # SQLite, and PostgreSQL if it answers
    python benchmarks/store_bench.py --postgres postgresql://postgres@127.0.0.1:5432/postgres

Simulated participants (`xai_lab.study.simulate`) go through the real `StudyService` on a
small prepared study (6 trials in three arms, peer rating, questionnaire), so every submit is
the real transaction: lock the participant, check the step and idempotency key, append the
event, write derived rows, advance. A "submit" is one answered step (consent, profile with
allocation, instructions, trial phases, attention check, ratings, questionnaire, debrief); each
also costs a `resume` with its "shown" event, as in the app. Reported: submits per second with
1 writer and with 8 concurrent writers, and the ratio 8 / 1 (above 1: writers overlap; below 1:
they queue on the database's write lock). Each PostgreSQL run uses a fresh database, dropped
after. Raw rows go to benchmarks/results/store_bench.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def prepared_study(home: Path, more_toml: str = "", **study: str | int) -> Path:
    """The test suite's small study (`write_study(**study)`, `more_toml` appended) on the model recipe
    of its `study_template` fixture (a corner marker a 4-epoch model learns on any CPU), prepared."""
    from conftest import run_cli, write_study

    assert run_cli("data", "synth", "--name", "tiny", "--n", "400", "--size", "32", "--seed", "3",
                   "--shortcut", "1.0").code == 0
    assert run_cli("train", "--data", "tiny", "--epochs", "4", "--members", "1", "--batch-size", "64",
                   "--quiet").code == 0
    design = write_study(home, **study)
    design.write_text(design.read_text() + more_toml)
    result = run_cli("study", "prepare", str(design))
    assert result.code == 0, result.err
    return design


@contextlib.contextmanager
def fresh_postgres(admin_url: str) -> Iterator[str]:
    import psycopg

    name = f"xai_lab_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(design_path: Path, url: str, writers: int, participants: int) -> dict:
    from sqlalchemy import func, select

    from xai_lab.store.schema import events
    from xai_lab.study.cases import load_case_set
    from xai_lab.study.design_file import load_design
    from xai_lab.study.service import StudyService
    from xai_lab.study.simulate import SimulationConfig, simulate

    design = load_design(design_path)
    service = StudyService.open(design, load_case_set(design), url=url)
    started = time.perf_counter()
    simulate(service, SimulationConfig(participants=participants, concurrency=writers, dropout=0.0))
    seconds = time.perf_counter() - started
    with service.engine.connect() as connection:
        submits = connection.execute(select(func.count()).select_from(events).where(
            events.c.kind.in_(["consent", "allocated", "answered"]))).scalar()
    service.engine.dispose()
    return {"writers": writers, "participants": participants, "submits": submits, "seconds": seconds,
            "submits_per_s": submits / seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=120)
    parser.add_argument("--postgres", default=os.environ.get("XAI_LAB_TEST_POSTGRES_URL",
                                                            "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        os.environ["XAI_LAB_HOME"] = str(home)
        design = prepared_study(home)
        for writers in (1, 8):
            row = {"database": "sqlite", **run(design, f"sqlite:///{home}/bench-{writers}.db", writers,
                                                   args.participants)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        try:
            for writers in (1, 8):
                with fresh_postgres(args.postgres) as url:
                    row = {"database": "postgresql", **run(design, url, writers, args.participants)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        except Exception as error:  # noqa: BLE001 - report and keep the SQLite numbers
            print(f"PostgreSQL skipped: {error}", file=sys.stderr)
    print("\n| database | writers | submits | seconds | submits/s | 8 writers / 1 writer |\n|---|---|---|---|---|---|")
    for row in rows:
        single = next(r for r in rows if r["database"] == row["database"] and r["writers"] == 1)
        ratio = row["submits_per_s"] / single["submits_per_s"]
        print(f"| {row['database']} | {row['writers']} | {row['submits']} | {row['seconds']:.1f} | "
              f"{row['submits_per_s']:.0f} | {ratio:.2f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "store_bench.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
