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
    analyze.add_argument("--preregistration", metavar="DIR",
                         help="the folder `xai-lab preregister` wrote (or its lock.json): print the lock and flag "
                              "every deviation from it in the report")
    analyze.add_argument("--allow-partial", action="store_true",
                         help="analyse an export that lacks its participants or ratings file (refused by default); "
                              "the report names what is missing and makes no claim that needs it")
    analyze.set_defaults(run=_run_analyze)

    power = commands.add_parser(
        "power", help="power of the declared primary test by simulating studies, or of a reader study",
        description="Simulate --reps studies per sample size from the design with planted effects, analyse each "
                    "with the design's declared primary test and secondary family (and the competence model), and "
                    "report the share that detect each contrast. With --mrmc: a reader study's power from a "
                    "pilot's OR estimates (--pilot) or by Roe-Metz simulation.")
    power.add_argument("--design", help="design file, e.g. studies/verify_vs_rely.toml (not with --mrmc)")
    power.add_argument("--effect", action="append", default=[], metavar="SPEC",
                       help="planted effect, repeatable: over_reliance:rely=0.45,verify=0.25 | "
                            "under_reliance:rely=0.05,verify=0.10 | competence:control=5.9,rely=3.8,verify=5.0 | "
                            "skill=0.8 (defaults: these) | case_arm_sd=1.0 (case-by-arm heterogeneity, logit SD; "
                            "default 0) | period_effect=0.1 (within designs)")
    power.add_argument("--n", default="20,40,80", help="participants per arm, comma-separated (default 20,40,80)")
    power.add_argument("--reps", type=int, default=200, help="simulated studies per size (default 200)")
    power.add_argument("--alpha", type=float, default=0.05)
    power.add_argument("--seed", type=int, default=0)
    power.add_argument("--item", help="competence item to test (default: 'competence' if the design has it)")
    power.add_argument("--out", help="output folder (default: $XAI_LAB_HOME/reports/power-DESIGN_ID, or "
                                      "reports/power-mrmc with --mrmc)")
    mrmc = power.add_argument_group("reader-study power (--mrmc): from a pilot (--pilot, Hillis-Obuchowski-Berbaum "
                                    "2011) or by Roe-Metz simulation of the OR test")
    mrmc.add_argument("--mrmc", action="store_true", help="size an MRMC (ROC AUC) reader study instead")
    mrmc.add_argument("--pilot", metavar="MRMC_JSON",
                      help="a pilot's `xai-lab mrmc --out DIR` result (DIR/mrmc.json, or saved `mrmc --json` output): "
                           "power from its OR estimates instead of a simulation")
    mrmc.add_argument("--generalisation", default="all", choices=("all", "random", "fixed_readers", "fixed_cases"),
                      help="with --pilot: which readers/cases are random (default: all three)")
    mrmc.add_argument("--target-power", type=float,
                      help="with --pilot: also the fewest cases reaching this power for each --readers, and the "
                           "fewest readers for each --cases")
    mrmc.add_argument("--abnormal-share", type=float,
                      help="share of abnormal cases in the study sized (default: the pilot's; 0.5 when simulating)")
    mrmc.add_argument("--delta-auc", type=float,
                      help="AUC difference to detect (default: the pilot's observed difference; 0.05 when simulating)")
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
    table.add_argument("--ai", metavar="COL",
                       help="column with a standalone AI's score for each case (the same in every row of a case): "
                            "also test the readers against the AI (one modality is then enough)")
    table.add_argument("--alpha", type=float, default=0.05)
    table.add_argument("--json", action="store_true", help="print one JSON object (on the last line)")
    table.add_argument("--out", help="folder for mrmc.json, reader_foms.csv, contrasts.csv and roc.png")
    table.set_defaults(run=_run_mrmc)


def _run_analyze(args: argparse.Namespace) -> int:
    from xai_lab.analysis import analyze_export, write_outputs
    from xai_lab.analysis.preregistration import Lock
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
    lock = Lock.read(Path(args.preregistration)) if args.preregistration else None
    analysis = analyze_export(source, resamples=args.resamples, seed=args.seed, mixed=not args.no_mixed,
                              primary_item=args.item, rehearsal=args.rehearsal, allow_partial=args.allow_partial,
                              preregistration=lock)
    written = write_outputs(analysis, out)
    check = analysis.preregistration
    if check is not None and check.lock:
        print(f"preregistration lock {check.lock}: "
              + (f"{len(check.deviations)} deviation(s)" if check.deviations else "followed"))
    for line in check.deviations if check is not None else []:
        print(f"xai-lab: deviation: {line}", file=sys.stderr)
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

    if args.pilot:
        return _run_pilot_power(args)
    structure = VARIANCE_STRUCTURES[args.structure]
    if args.variance:
        try:
            structure = VarianceStructure(*(float(v) for v in args.variance.split(",")))
        except (TypeError, ValueError):
            raise ConfigError(f"--variance takes six numbers R,TR,C,TC,RC,E, got {args.variance!r}") from None
    if not 0 < args.alpha < 1 or args.reps < 10:
        raise ConfigError("--alpha must be between 0 and 1 and --reps at least 10")
    design = "split-plot" if args.split_plot else "crossed"
    delta = 0.05 if args.delta_auc is None else args.delta_auc
    share = 0.5 if args.abnormal_share is None else args.abnormal_share
    table = mrmc_power(structure, delta, _whole_numbers(args.readers, "--readers"),
                       _whole_numbers(args.cases, "--cases"), args.reps, args.alpha, args.base_auc, design, args.seed,
                       abnormal_share=share)
    out = Path(args.out) if args.out else report_dir("power-mrmc")
    settings = {"structure": structure.__dict__, "design": design, "delta_auc": delta, "abnormal_share": share,
                "base_auc": args.base_auc, "alpha": args.alpha, "reps": args.reps}
    print(table.pivot(index="readers", columns="cases", values="power").round(3).to_string())
    _write_power(out, "mrmc_power", table, settings, lambda path: mrmc_power_plot(table, path, args.alpha))
    return 0


def _run_pilot_power(args: argparse.Namespace) -> int:
    """Power (and cases for a target power) from a pilot's OR estimates: no simulation."""
    import pandas as pd

    from xai_lab.analysis.pilot_power import (
        GENERALISATION_NAMES,
        PilotEstimates,
        cases_needed,
        pilot_power,
        readers_needed,
    )
    from xai_lab.analysis.roe_metz import mrmc_power_plot
    from xai_lab.paths import report_dir

    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha must be between 0 and 1, got {args.alpha}")
    if args.target_power is not None and not 0 < args.target_power < 1:
        raise ConfigError(f"--target-power must be between 0 and 1, got {args.target_power}")
    pilot = PilotEstimates.from_mrmc_json(_read_json(Path(args.pilot), "--pilot"))
    names = list(GENERALISATION_NAMES) if args.generalisation == "all" else [args.generalisation]
    readers, cases = _whole_numbers(args.readers, "--readers"), _whole_numbers(args.cases, "--cases")
    rows = [{"generalisation": name, "readers": j, "cases": k,
             "power": pilot_power(pilot, j, k, name, args.delta_auc, args.alpha, args.abnormal_share)}
            for name in names for j in readers for k in cases]
    table = pd.DataFrame(rows)
    effect = pilot.difference if args.delta_auc is None else args.delta_auc
    print(f"pilot {args.pilot}: {pilot.modalities[0]} - {pilot.modalities[1]} = {pilot.difference:+.4f} observed; "
          f"sizing for a difference of {effect:+.4f} (alpha {args.alpha:g})")
    for name in names:
        print(f"\n{GENERALISATION_NAMES[name]}: power")
        print(table[table["generalisation"] == name].pivot(index="readers", columns="cases", values="power")
              .round(4).to_string())
    needed = []
    if args.target_power is not None:
        needed = [{"generalisation": name, "readers": j, "cases_needed":
                   cases_needed(pilot, j, args.target_power, name, args.delta_auc, args.alpha, args.abnormal_share)}
                  for name in names for j in readers]
        print(f"\ncases for power {args.target_power:g} (none: more cases alone cannot reach it, add readers):")
        print(_counts(pd.DataFrame(needed).pivot(index="readers", columns="generalisation", values="cases_needed")))
        readers_for = [{"generalisation": name, "cases": k, "readers_needed":
                        readers_needed(pilot, k, args.target_power, name, args.delta_auc, args.alpha,
                                       args.abnormal_share)} for name in names for k in cases]
        print(f"\nreaders for power {args.target_power:g}:")
        print(_counts(pd.DataFrame(readers_for).pivot(index="cases", columns="generalisation",
                                                      values="readers_needed")))
        needed += readers_for
    out = Path(args.out) if args.out else report_dir("power-mrmc-pilot")
    settings = {"pilot": str(args.pilot), "method": "Hillis, Obuchowski & Berbaum (2011)", "effect": effect,
                "abnormal_share": args.abnormal_share, "alpha": args.alpha, "cases_needed": needed}
    plotted = table[table["generalisation"] == names[0]].assign(mc_se=0.0, delta_auc=effect,
                                                                 design=GENERALISATION_NAMES[names[0]])
    _write_power(out, "mrmc_pilot_power", table, settings,
                 lambda path: mrmc_power_plot(plotted, path, args.alpha))
    return 0


def _counts(table) -> str:
    """A table of whole numbers as text, 'none' where no size reaches the target."""
    return table.map(lambda value: "none" if value != value or value is None else str(int(value))).to_string()


def _read_json(path: Path, option: str) -> dict:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{option}: no file at {path}; give the mrmc.json that `xai-lab mrmc --out DIR` wrote") \
            from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{option}: {path} is not a JSON file ({error}); give the mrmc.json that `xai-lab mrmc "
                          "--out DIR` wrote") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{option}: {path} does not hold an `xai-lab mrmc` result")
    return value


def _run_mrmc(args: argparse.Namespace) -> int:
    from xai_lab.analysis.ai_vs_readers import ai_scores_from, ai_vs_readers
    from xai_lab.analysis.mrmc import or_analysis
    from xai_lab.analysis.mrmc_output import describe, describe_ai, read_table, write_mrmc_outputs
    from xai_lab.analysis.reader_study import reader_study
    from xai_lab.analysis.results import json_safe

    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha must be between 0 and 1, got {args.alpha}")
    frame = read_table(Path(args.table), text_columns=(args.reader, args.case, args.modality))
    study = reader_study(frame, reader=args.reader, case=args.case, truth=args.truth, score=args.score,
                         modality=args.modality, positive=args.positive,
                         higher_is_positive=not args.lower_is_positive, min_modalities=1 if args.ai else 2)
    result = or_analysis(study, args.fom, args.alpha) if len(study.modalities) >= 2 else None
    versus_ai = None
    if args.ai:
        ai_scores = ai_scores_from(frame, study, args.case, args.ai, args.lower_is_positive)
        versus_ai = ai_vs_readers(study, ai_scores, args.fom, args.alpha)
    if args.out:
        write_mrmc_outputs(result, study, Path(args.out), versus_ai)
    if args.json:
        document = result.to_json() if result is not None else {"method": "AI vs readers", "fom": args.fom}
        if versus_ai is not None:
            document["ai_vs_readers"] = [comparison.to_json() for comparison in versus_ai]
        print(json.dumps(json_safe(document)))
    else:
        print("\n\n".join(part for part in (describe(result) if result else "",
                                            describe_ai(versus_ai, args.fom) if versus_ai else "") if part))
    return 0
