"""``xai-lab analyze`` and ``xai-lab power``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from xai_lab.errors import ConfigError


def add_analysis_commands(commands: argparse._SubParsersAction) -> None:
    analyze = commands.add_parser(
        "analyze", help="turn a study export into report.html, CSV tables and summary.json",
        description="Analyse an export folder (from `xai-lab export`), or a study straight from the database "
                    "(--study ID: exported to OUT/export first). Writes OUT/report.html (self-contained), CSV "
                    "tables and OUT/summary.json.")
    analyze.add_argument("export", nargs="?", help="export folder (participants, trials, ratings files)")
    analyze.add_argument("--study", help="study id: export it from the database, then analyse")
    analyze.add_argument("--out", help="output folder (default with --study: $XAI_LAB_HOME/reports/ID)")
    analyze.add_argument("--database", help="database URL with --study (default: $XAI_LAB_DATABASE_URL, else "
                                            "sqlite:///$XAI_LAB_HOME/xai_lab.db)")
    analyze.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    analyze.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    analyze.add_argument("--item", help="primary competence item (default: 'competence' if rated, else the first)")
    analyze.add_argument("--no-mixed", action="store_true",
                         help="skip the Bayesian mixed GLM check (GEE only; ~15 s faster on 20,000 trials)")
    analyze.set_defaults(run=_run_analyze)

    power = commands.add_parser(
        "power", help="power of the main contrasts by simulating studies with planted effects",
        description="Simulate --reps studies per sample size from the design with planted effects, analyse each "
                    "with the report's models, and report the share that detect each contrast.")
    power.add_argument("--design", required=True, help="design file, e.g. studies/verify_vs_rely.toml")
    power.add_argument("--effect", action="append", default=[], metavar="SPEC",
                       help="planted effect, repeatable: over_reliance:rely=0.45,verify=0.25 | "
                            "under_reliance:rely=0.05,verify=0.10 | competence:control=5.9,rely=3.8,verify=5.0 | "
                            "skill=0.8 (defaults: these)")
    power.add_argument("--n", default="20,40,80", help="participants per arm, comma-separated (default 20,40,80)")
    power.add_argument("--reps", type=int, default=200, help="simulated studies per size (default 200)")
    power.add_argument("--alpha", type=float, default=0.05)
    power.add_argument("--seed", type=int, default=0)
    power.add_argument("--item", help="competence item to test (default: 'competence' if the design has it)")
    power.add_argument("--out", help="output folder (default: $XAI_LAB_HOME/reports/power-DESIGN_ID)")
    power.set_defaults(run=_run_power)


def _run_analyze(args: argparse.Namespace) -> int:
    from xai_lab.analysis import analyze_export, write_outputs
    from xai_lab.paths import report_dir

    if (args.export is None) == (args.study is None):
        raise ConfigError("give an export folder or --study ID (one of them): e.g. `xai-lab analyze exports/demo "
                          "--out reports/demo` or `xai-lab analyze --study demo`")
    if args.resamples < 100:
        raise ConfigError(f"--resamples must be at least 100 for a 95% interval, got {args.resamples}")
    if args.export is None:
        out = Path(args.out) if args.out else report_dir(args.study)
        source = _export_from_database(args.study, args.database, out / "export")
    else:
        if args.out is None:
            raise ConfigError("--out DIR is required with an export folder (where report.html goes)")
        source, out = Path(args.export), Path(args.out)
    analysis = analyze_export(source, resamples=args.resamples, seed=args.seed, mixed=not args.no_mixed,
                              primary_item=args.item)
    written = write_outputs(analysis, out)
    for note in analysis.notes:
        print(f"xai-lab: note: {note}", file=sys.stderr)
    print(f"analysed {source}: {json.dumps(analysis.n_participants)} participants by arm; "
          f"report {written['report']}, summary {written['summary']}")
    return 0


def _export_from_database(study_id: str, database: str | None, folder: Path) -> Path:
    from xai_lab.store.database import open_database
    from xai_lab.study.export import export_study

    export_study(open_database(database), study_id, folder)
    return folder


def _run_power(args: argparse.Namespace) -> int:
    from xai_lab.analysis.power import parse_effects, power_plot, power_table
    from xai_lab.paths import report_dir
    from xai_lab.study.design import load_design

    try:
        sizes = [int(n) for n in args.n.split(",") if n.strip()]
    except ValueError:
        raise ConfigError(f"--n must be comma-separated whole numbers of participants per arm, got {args.n!r}") \
            from None
    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha must be between 0 and 1, got {args.alpha}")
    design = load_design(args.design)
    effects = parse_effects(args.effect)
    table = power_table(design, effects, sizes, args.reps, alpha=args.alpha, seed=args.seed, item=args.item)
    out = Path(args.out) if args.out else report_dir(f"power-{design.id}")
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "power.csv", index=False)
    (out / "power.json").write_text(json.dumps({"design": design.id, "effects": effects.__dict__,
                                                "alpha": args.alpha, "reps": args.reps,
                                                "rows": table.to_dict(orient="records")}, indent=2) + "\n")
    power_plot(table, out / "power.png", args.alpha)
    print(table.pivot(index="contrast", columns="per_arm", values="power").round(3).to_string())
    print(f"written: {out / 'power.csv'}, {out / 'power.json'}, {out / 'power.png'}")
    return 0
