"""``xai-lab study validate|prepare``, ``xai-lab simulate`` and ``xai-lab export``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xai_lab.cli.common import usage
from xai_lab.errors import ConfigError


def add_study_commands(commands: argparse._SubParsersAction) -> None:
    study = commands.add_parser("study", help="validate and prepare study designs (studies/*.toml)",
                                description="Study designs: check a TOML design, or build everything it needs.")
    sub = study.add_subparsers(title="study commands", metavar="COMMAND")
    validate = sub.add_parser("validate", help="check a design file; print a summary")
    validate.add_argument("file", help="design file, e.g. studies/demo.toml")
    validate.add_argument("--json", action="store_true", help="print the parsed design as JSON")
    validate.set_defaults(run=_run_validate)
    prepare = sub.add_parser("prepare", help="build the design's dataset and model if missing, select cases, "
                                             "precompute overlays, register the study in the database")
    prepare.add_argument("file", help="design file, e.g. studies/demo.toml")
    _database_option(prepare)
    prepare.set_defaults(run=_run_prepare)
    study.set_defaults(run=lambda args: usage(study))

    simulate = commands.add_parser("simulate", help="run simulated participants through a prepared study",
                                   description="Simulated clinicians answer through the same service API as people; "
                                               "a second run resumes the participants an interrupted run left.")
    simulate.add_argument("--study", required=True, help="design file of a prepared study")
    simulate.add_argument("--participants", type=int, required=True, help="number of simulated participants")
    simulate.add_argument("--concurrency", type=int, default=1, help="participants in parallel (default 1)")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--skill", type=float, default=0.75, help="chance an unaided read is right (0-1)")
    simulate.add_argument("--reliance", type=float, default=0.6,
                          help="chance of taking the AI's label when it differs (0-1)")
    simulate.add_argument("--dropout", type=float, default=0.1, help="share who stop answering part-way (0-1)")
    simulate.add_argument("--withdraw", type=float, default=0.0, help="share who withdraw part-way (0-1)")
    simulate.add_argument("--pilot", action="store_true", help="mark them as pilot participants")
    _database_option(simulate)
    simulate.set_defaults(run=_run_simulate)

    export = commands.add_parser("export", help="write a study's participants, trials, ratings and questionnaire "
                                                "files with a codebook")
    export.add_argument("--study", required=True, help="study id (as in the design file)")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--format", default="csv", choices=("csv", "parquet"))
    _database_option(export)
    export.set_defaults(run=_run_export)


def _database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", help="database URL (default: $XAI_LAB_DATABASE_URL, else "
                                           "sqlite:///$XAI_LAB_HOME/xai_lab.db)")


def _run_validate(args: argparse.Namespace) -> int:
    from xai_lab.study.design_file import load_design

    design = load_design(args.file)
    if args.json:
        print(json.dumps(design.to_json(), indent=2))
        return 0
    print(f"{design.source}: valid. Study {design.id!r}: {design.title}")
    print(f"  arms {', '.join(design.arms)}; allocation {design.allocation.kind}, blocks "
          f"{list(design.allocation.block_sizes)}, strata {list(design.allocation.strata) or 'none'}")
    print(f"  {design.cases.n} trials ({design.cases.ai_wrong_share:.0%} AI-wrong, advice {design.cases.advice}), "
          f"{design.cases.practice} practice, {design.attention.count} attention checks; peer rating "
          f"{design.peer_rating.kind}; {len(design.questionnaires)} questionnaire(s)")
    return 0


def _run_prepare(args: argparse.Namespace) -> int:
    from xai_lab.study.design_file import load_design

    design = load_design(args.file)  # a wrong path or design is refused before the heavy imports below

    from xai_lab.store.database import open_database
    from xai_lab.study.prepare import prepare_study, prepared_path

    engine = open_database(args.database)
    case_set = prepare_study(design, engine)
    wrong = sum(not case.ai_correct for case in case_set.cases)
    planted = sum(case.advice_source == "planted" for case in case_set.cases)
    print(f"prepared {design.id!r}: {len(case_set.cases)} cases ({wrong} AI-wrong, {planted} planted), "
          f"{len(case_set.practice)} practice, {len(case_set.attention)} attention; case set "
          f"{prepared_path(design.id)}; database {engine.url.render_as_string()}")
    return 0


def _run_simulate(args: argparse.Namespace) -> int:
    from xai_lab.study.design_file import load_design
    from xai_lab.study.prepare import load_case_set
    from xai_lab.study.service import StudyService
    from xai_lab.study.simulate import SimulationConfig, simulate

    if args.participants < 1 or not 1 <= args.concurrency <= 64:
        raise ConfigError("--participants must be at least 1 and --concurrency from 1 to 64")
    for name in ("skill", "reliance", "dropout", "withdraw"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise ConfigError(f"--{name} must be a probability from 0 to 1, got {getattr(args, name)}")
    design = load_design(args.study)
    service = StudyService.open(design, load_case_set(design), url=args.database)
    config = SimulationConfig(participants=args.participants, concurrency=args.concurrency, seed=args.seed,
                              skill=args.skill, reliance=args.reliance, dropout=args.dropout,
                              withdraw=args.withdraw, pilot=args.pilot)
    print(json.dumps(simulate(service, config).to_dict()))
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from xai_lab.store.database import open_database
    from xai_lab.study.export import export_study

    counts = export_study(open_database(args.database), args.study, Path(args.out), args.format)
    print(f"exported {args.study!r} to {args.out}: " + ", ".join(f"{n} {name}" for name, n in counts.items()))
    return 0
