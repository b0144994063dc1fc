"""``xai-lab study validate|prepare``, ``xai-lab simulate`` and ``xai-lab export``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xai_lab.cli.common import add_study_choice, open_study_service, usage
from xai_lab.errors import ConfigError


def add_study_commands(commands: argparse._SubParsersAction) -> None:
    study = commands.add_parser("study", help="validate and prepare study designs (studies/*.toml)",
                                description="Study designs: check a TOML design, or build everything it needs.")
    sub = study.add_subparsers(title="study commands", metavar="COMMAND")
    validate = sub.add_parser("validate", help="check a design file; print a summary")
    validate.add_argument("file", help="design file, e.g. studies/demo.toml")
    validate.add_argument("--json", action="store_true", help="print the parsed design as JSON")
    validate.set_defaults(run=_run_validate)
    settings = sub.add_parser("settings", help="list every design setting: type, default, meaning (Markdown)")
    settings.set_defaults(run=_run_settings)
    prepare = sub.add_parser("prepare", help="build the design's dataset and model if missing, select cases, "
                                             "precompute overlays, register the study in the database")
    prepare.add_argument("file", help="design file, e.g. studies/demo.toml")
    _database_option(prepare)
    prepare.set_defaults(run=_run_prepare)
    study.set_defaults(run=lambda args: usage(study))

    simulate = commands.add_parser("simulate", help="run simulated participants through a prepared study",
                                   description="Simulated clinicians answer through the same service API as people; "
                                               "a second run resumes the participants an interrupted run left.")
    add_study_choice(simulate)
    simulate.add_argument("--participants", type=int, required=True, help="number of simulated participants")
    simulate.add_argument("--concurrency", type=int, default=1, help="participants in parallel (default 1)")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--skill", type=float, default=0.75, help="chance an unaided read is right (0-1)")
    simulate.add_argument("--reliance", type=float, default=0.6,
                          help="chance of taking the AI's label when it differs (0-1)")
    simulate.add_argument("--reliance-at", action="append", default=[], metavar="FACTOR=LEVEL:P",
                          help="designs with [factors]: the reliance on trials read at a factor's level, e.g. "
                               "explanation=contour:0.4 (repeatable; a planted effect)")
    simulate.add_argument("--ask-ai", type=float, default=0.7,
                          help="on_demand workflow: chance a reader asks for the AI on a case (0-1)")
    simulate.add_argument("--dropout", type=float, default=0.1, help="share who stop answering part-way (0-1)")
    simulate.add_argument("--withdraw", type=float, default=0.0, help="share who withdraw part-way (0-1)")
    simulate.add_argument("--pilot", action="store_true", help="mark them as pilot participants")
    _database_option(simulate)
    simulate.set_defaults(run=_run_simulate)

    export = commands.add_parser("export", help="write a study's participants, trials, ratings and questionnaire "
                                                "files with a codebook")
    export.add_argument("--study", required=True, help="study id (as in the design file)")
    export.add_argument("--out", help="output folder (required unless --payment)")
    export.add_argument("--format", default="csv", choices=("csv", "parquet"))
    export.add_argument("--payment", metavar="FILE",
                        help="instead, write the recruitment panel's payment file (panel ids, status, completion "
                             "code; no answers, no participant ids) to FILE")
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
    for factor in design.factors:
        print(f"  factor {factor.name} ({factor.sets}, {factor.vary}"
              f"{', ' + factor.schedule if factor.vary == 'within' else ''}): {', '.join(factor.levels)}")
    if design.factors:
        print(f"  allocation units (between cells x within rotations): {', '.join(design.orders)}")
    print(f"  {design.cases.n} trials ({design.cases.ai_wrong_share:.0%} AI-wrong, advice {design.cases.advice}), "
          f"{design.cases.practice} practice, {design.attention.count} attention checks; peer rating "
          f"{design.peer_rating.kind}; {len(design.questionnaires)} questionnaire(s)")
    return 0


def _run_settings(args: argparse.Namespace) -> int:
    from xai_lab.study.design import DESIGN_SECTIONS
    from xai_lab.study.design_fields import markdown_reference

    print(markdown_reference(DESIGN_SECTIONS))
    return 0


def _run_prepare(args: argparse.Namespace) -> int:
    from xai_lab.study.design_file import load_design

    design = load_design(args.file)  # a wrong path or design is refused before the heavy imports below

    from xai_lab.store.database import open_database
    from xai_lab.study.cases import prepared_path
    from xai_lab.study.prepare import prepare_study

    engine = open_database(args.database)
    case_set = prepare_study(design, engine)
    wrong = sum(not case.ai_correct for case in case_set.cases)
    planted = sum(case.advice_source == "planted" for case in case_set.cases)
    print(f"prepared {design.id!r}: {len(case_set.cases)} cases ({wrong} AI-wrong, {planted} planted), "
          f"{len(case_set.practice)} practice, {len(case_set.attention)} attention; case set "
          f"{prepared_path(design.id)}; database {engine.url.render_as_string()}")
    return 0


def _run_simulate(args: argparse.Namespace) -> int:
    from xai_lab.study.simulate import SimulationConfig, simulate

    config = SimulationConfig(  # checks its own ranges: one line naming the setting
participants=args.participants, concurrency=args.concurrency, seed=args.seed,
                              skill=args.skill, reliance=args.reliance, dropout=args.dropout,
                              withdraw=args.withdraw, pilot=args.pilot, ask_ai=args.ask_ai,
                              reliance_at=tuple(_level_effect(text) for text in args.reliance_at))
    print(json.dumps(simulate(open_study_service(args), config).to_dict()))
    return 0


def _level_effect(text: str) -> tuple[str, str, float]:
    """'explanation=contour:0.4' -> ('explanation', 'contour', 0.4)."""
    factor, _, rest = text.partition("=")
    level, _, value = rest.rpartition(":")
    try:
        probability = float(value)
    except ValueError:
        probability = None
    if not factor or not level or probability is None:
        raise ConfigError(f"--reliance-at {text!r} is not FACTOR=LEVEL:P; write e.g. explanation=contour:0.4")
    return factor, level, probability


def _run_export(args: argparse.Namespace) -> int:
    from xai_lab.store.database import open_database
    from xai_lab.study.export import export_payment, export_study

    if args.payment:
        rows = export_payment(open_database(args.database), args.study, Path(args.payment))
        print(f"payment file of {args.study!r}: {rows} panel participant(s) in {args.payment} (it holds the panel's "
              "ids: keep it apart from the data)")
        return 0
    if not args.out:
        raise ConfigError("export needs --out DIR (or --payment FILE for the panel's payment file)")
    counts = export_study(open_database(args.database), args.study, Path(args.out), args.format)
    print(f"exported {args.study!r} to {args.out}: " + ", ".join(f"{n} {name}" for name, n in counts.items()))
    return 0
