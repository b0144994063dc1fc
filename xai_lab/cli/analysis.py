"""``xai-lab analyze`` and ``xai-lab power``."""

from __future__ import annotations

import argparse
import json
import os
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
    analyze.add_argument("--rehearsal", action="store_true",
                         help="include simulated and pilot participants (left out by default): a rehearsal of the "
                              "analysis, marked as such at the top of the report")
    analyze.add_argument("--allow-partial", action="store_true",
                         help="analyse an export that lacks its participants or ratings file (refused by default); "
                              "the report names what is missing and makes no claim that needs it")
    analyze.set_defaults(run=_run_analyze)

    power = commands.add_parser(
        "power", help="power of the main contrasts by simulating studies with planted effects",
        description="Simulate --reps studies per sample size from the design with planted effects, analyse each "
                    "with the report's models, and report the share that detect each contrast.")
    power.add_argument("--design", help="design file, e.g. studies/verify_vs_rely.toml (not with --mrmc)")
    power.add_argument("--effect", action="append", default=[], metavar="SPEC",
                       help="planted effect, repeatable: over_reliance:rely=0.45,verify=0.25 | "
                            "under_reliance:rely=0.05,verify=0.10 | competence:control=5.9,rely=3.8,verify=5.0 | "
                            "skill=0.8 (defaults: these)")
    power.add_argument("--n", default="20,40,80", help="participants per arm, comma-separated (default 20,40,80)")
    power.add_argument("--reps", type=int, default=200, help="simulated studies per size (default 200)")
    power.add_argument("--alpha", type=float, default=0.05)
    power.add_argument("--seed", type=int, default=0)
    power.add_argument("--item", help="competence item to test (default: 'competence' if the design has it)")
    power.add_argument("--out", help="output folder (default: $XAI_LAB_HOME/reports/power-DESIGN_ID, or "
                                      "reports/power-mrmc with --mrmc)")
    mrmc = power.add_argument_group("reader-study power (--mrmc): Roe-Metz simulation, OR test, readers and "
                                    "cases random")
    mrmc.add_argument("--mrmc", action="store_true", help="size an MRMC (ROC AUC) reader study instead")
    mrmc.add_argument("--delta-auc", type=float, default=0.05, help="AUC difference to detect (default 0.05)")
    mrmc.add_argument("--base-auc", type=float, default=0.75, help="AUC of the reference condition (default 0.75)")
    mrmc.add_argument("--readers", default="4,6,10", help="readers, comma-separated (per arm with --split-plot)")
    mrmc.add_argument("--cases", default="50,100,200", help="cases, comma-separated (half abnormal)")
    mrmc.add_argument("--structure", default="medium", choices=("low", "medium", "high"),
                      help="reader variability and case correlation (docs/analysis.md#mrmc)")
    mrmc.add_argument("--variance", help="your own Roe-Metz variances R,TR,C,TC,RC,E (the last four sum to 1)")
    mrmc.add_argument("--split-plot", action="store_true",
                      help="readers nested in conditions (a between-arm study) instead of fully crossed")
    power.set_defaults(run=_run_power)

    table = commands.add_parser(
        "mrmc", help="multi-reader multi-case ROC analysis (Obuchowski-Rockette, Hillis ddf) of a long table",
        description="Analyse a reader study given as a long CSV or Parquet table, one row per reader x modality x "
                    "case. Fully crossed and split-plot (readers nested in modalities) layouts; readers and cases "
                    "random, plus fixed-reader and fixed-case results.")
    table.add_argument("table", help="CSV or Parquet file")
    for name, meaning in (("reader", "reader ids"), ("case", "case ids"), ("truth", "true status (0/1, or use "
                          "--positive)"), ("score", "reader's rating (higher = more suspicious)"),
                          ("modality", "reading condition / modality")):
        table.add_argument(f"--{name}", required=True, metavar="COL", help=f"column with the {meaning}")
    table.add_argument("--positive", help="the truth value that means abnormal (default: 1 or True)")
    table.add_argument("--lower-is-positive", action="store_true",
                       help="lower scores mean more suspicious (e.g. 1 = definitely abnormal)")
    table.add_argument("--fom", default="auc", choices=("auc", "sensitivity", "specificity"),
                       help="figure of merit (sensitivity/specificity: the score is the reader's 0/1 call)")
    table.add_argument("--alpha", type=float, default=0.05)
    table.add_argument("--json", action="store_true", help="print one JSON object (on the last line)")
    table.add_argument("--out", help="folder for mrmc.json, reader_foms.csv, contrasts.csv and roc.png")
    table.set_defaults(run=_run_mrmc)


def _run_analyze(args: argparse.Namespace) -> int:
    from xai_lab.analysis import analyze_export, write_outputs
    from xai_lab.paths import report_dir

    if (args.export is None) == (args.study is None):
        raise ConfigError("give an export folder or --study ID (one of them): e.g. `xai-lab analyze exports/demo "
                          "--out reports/demo` or `xai-lab analyze --study demo`")
    if args.resamples < 100:
        raise ConfigError(f"--resamples must be at least 100 for a 95% interval, got {args.resamples}")
    if args.export is None:
        out = _writable_folder(Path(args.out) if args.out else report_dir(args.study))
        # export_study makes the folders only once the study is found: an unknown id leaves nothing behind
        source = _export_from_database(args.study, args.database, out / "export")
    else:
        if args.out is None:
            raise ConfigError("--out DIR is required with an export folder (where report.html goes)")
        source, out = Path(args.export), _writable_folder(Path(args.out))
    analysis = analyze_export(source, resamples=args.resamples, seed=args.seed, mixed=not args.no_mixed,
                              primary_item=args.item, rehearsal=args.rehearsal, allow_partial=args.allow_partial)
    written = write_outputs(analysis, out)
    for line in analysis.headline_warnings:
        print(f"xai-lab: warning: {line}", file=sys.stderr)
    for note in analysis.notes:
        print(f"xai-lab: note: {note}", file=sys.stderr)
    print(f"analysed {source}: {json.dumps(analysis.n_participants)} participants by arm; "
          f"report {written['report']}, summary {written['summary']}")
    return 0


def _writable_folder(path: Path) -> Path:
    """Fail before hours of work, not after: the output folder takes a file, or its nearest existing
    parent lets it be made. Nothing is created here, so a refused export leaves no empty folder."""
    existing = next(folder for folder in (path, *path.parents) if folder.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "a file is in the way")
        probe = existing / f".xai-lab-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"cannot write to the output folder {path} ({error.strerror or error}); choose another "
                          "--out") from None
    return path


def _export_from_database(study_id: str, database: str | None, folder: Path) -> Path:
    from xai_lab.store.database import open_database
    from xai_lab.study.export import export_study

    export_study(open_database(database), study_id, folder)
    return folder


def _run_power(args: argparse.Namespace) -> int:
    from xai_lab.analysis.power import parse_effects, power_plot, power_table
    from xai_lab.paths import report_dir
    from xai_lab.study.design_file import load_design

    if args.mrmc:
        return _run_mrmc_power(args)
    if args.design is None:
        raise ConfigError("name the design with --design FILE (or size a reader study with --mrmc)")
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
    settings = {"design": design.id, "effects": effects.__dict__, "alpha": args.alpha, "reps": args.reps}
    _write_power(out, "power", table, settings, lambda path: power_plot(table, path, args.alpha))
    print(table.pivot(index="contrast", columns="per_arm", values="power").round(3).to_string())
    return 0


def _write_power(out: Path, name: str, table, settings: dict, plot) -> None:
    """NAME.csv (the table), NAME.json (settings and rows) and NAME.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / f"{name}.csv", index=False)
    (out / f"{name}.json").write_text(json.dumps({**settings, "rows": table.to_dict(orient="records")}, indent=2)
                                      + "\n")
    plot(out / f"{name}.png")
    print(f"written: {out / f'{name}.csv'}, {out / f'{name}.json'}, {out / f'{name}.png'}")


def _whole_numbers(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values:
        raise ConfigError(f"{option} must be comma-separated whole numbers, got {text!r}")
    return values


def _run_mrmc_power(args: argparse.Namespace) -> int:
    from xai_lab.analysis.roe_metz import VARIANCE_STRUCTURES, VarianceStructure, mrmc_power, mrmc_power_plot
    from xai_lab.paths import report_dir

    structure = VARIANCE_STRUCTURES[args.structure]
    if args.variance:
        try:
            structure = VarianceStructure(*(float(v) for v in args.variance.split(",")))
        except (TypeError, ValueError):
            raise ConfigError(f"--variance takes six numbers R,TR,C,TC,RC,E, got {args.variance!r}") from None
    if not 0 < args.alpha < 1 or args.reps < 10:
        raise ConfigError("--alpha must be between 0 and 1 and --reps at least 10")
    design = "split-plot" if args.split_plot else "crossed"
    table = mrmc_power(structure, args.delta_auc, _whole_numbers(args.readers, "--readers"),
                       _whole_numbers(args.cases, "--cases"), args.reps, args.alpha, args.base_auc, design, args.seed)
    out = Path(args.out) if args.out else report_dir("power-mrmc")
    settings = {"structure": structure.__dict__, "design": design, "delta_auc": args.delta_auc,
                "base_auc": args.base_auc, "alpha": args.alpha, "reps": args.reps}
    print(table.pivot(index="readers", columns="cases", values="power").round(3).to_string())
    _write_power(out, "mrmc_power", table, settings, lambda path: mrmc_power_plot(table, path, args.alpha))
    return 0


def _run_mrmc(args: argparse.Namespace) -> int:
    from xai_lab.analysis.mrmc import or_analysis
    from xai_lab.analysis.mrmc_output import describe, read_table, write_mrmc_outputs
    from xai_lab.analysis.reader_study import reader_study

    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha must be between 0 and 1, got {args.alpha}")
    frame = read_table(Path(args.table))
    study = reader_study(frame, reader=args.reader, case=args.case, truth=args.truth, score=args.score,
                         modality=args.modality, positive=args.positive,
                         higher_is_positive=not args.lower_is_positive)
    result = or_analysis(study, args.fom, args.alpha)
    if args.out:
        write_mrmc_outputs(result, study, Path(args.out))
    if args.json:
        from xai_lab.analysis.results import json_safe

        print(json.dumps(json_safe(result.to_json())))
    else:
        print(describe(result))
    return 0
