"""The ``xai-lab`` command line: a thin layer over the library.

Each command validates its arguments, calls one library function, and prints the result.
Domain errors (`XaiLabError`) become one line on stderr and exit status 2, like argparse's
own usage errors; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from xai_lab.cli_analysis import add_analysis_commands
from xai_lab.cli_explain import add_explain_commands
from xai_lab.cli_serve import add_demo_serve_options, add_serve_commands, run_demo_server
from xai_lab.cli_study import add_study_commands
from xai_lab.errors import ConfigError, XaiLabError

EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.run(args) or 0
    except XaiLabError as error:
        print(f"xai-lab: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("xai-lab: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xai-lab", description="Explainable-AI clinician trust lab: data, calibrated models, studies.",
        epilog="Generated files live under $XAI_LAB_HOME (default: the current directory) in data/ and models/.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_data_commands(commands)
    _add_train_command(commands)
    _add_evaluate_command(commands)
    add_explain_commands(commands)
    add_study_commands(commands)
    add_serve_commands(commands)
    add_analysis_commands(commands)
    demo = commands.add_parser("demo", help="build the default dataset and model if absent, prepare the demo study "
                                            "and serve it",
                               description="Build the default synthetic dataset and its calibrated model if they are "
                                           "missing, print the model card, prepare studies/demo.toml and serve it "
                                           "(participant, researcher and trainer URLs are printed).")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    add_demo_serve_options(demo)
    demo.set_defaults(run=_run_demo)
    return parser


# ---------------------------------------------------------------- data


def _add_data_commands(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="create, import, fetch and list datasets",
                               description="Create, import, fetch and list datasets.")
    data_commands = data.add_subparsers(title="data commands", metavar="COMMAND")
    data.set_defaults(run=lambda args: _usage(data))

    synth = data_commands.add_parser("synth", help="generate a synthetic radiograph-like set with lesion masks")
    synth.add_argument("--name", required=True, help="dataset name, e.g. synthetic")
    synth.add_argument("--n", type=int, default=2000, help="number of images (default 2000)")
    synth.add_argument("--size", type=int, default=128, help="image size in pixels (default 128)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--shortcut", type=float, default=None, metavar="RATE",
                       help="add a corner marker on RATE of lesion and 1-RATE of normal images (0.5 = uncorrelated)")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that name")
    synth.set_defaults(run=_run_synth)

    imported = data_commands.add_parser(
        "import", help="import a MedMNIST .npz, a single-split .npz or a folder of class subfolders (images or DICOM)")
    imported.add_argument("path", help="an .npz file, or a folder <class>/<images> (ImageFolder layout) or "
                                       "<class>/**/<DICOM files>")
    imported.add_argument("--name", required=True, help="dataset name")
    imported.add_argument("--classes", type=_comma_list, default=None,
                          help="class names in label order, comma separated (known datasets need none)")
    imported.add_argument("--size", type=int, default=None,
                          help="resize images to SIZE x SIZE (folders default to 224; .npz files keep their size)")
    imported.add_argument("--seed", type=int, default=0, help="seed of the train/val/test split, where one is made")
    imported.add_argument("--channels", type=int, default=None, choices=[1, 3],
                          help="folders only: 1 = grayscale (default), 3 = colour")
    imported.add_argument("--allow-identifiable", action="store_true",
                          help="DICOM: import files that still carry identifying attributes (names, birth date, "
                               "institution, ...; see docs/data.md); only pixels, spacing and window are kept")
    imported.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that name")
    imported.set_defaults(run=_run_import)

    fetch = data_commands.add_parser("fetch", help="download an official MedMNIST file (network), verify, import")
    fetch.add_argument("dataset", help="MedMNIST name, e.g. pneumoniamnist")
    fetch.add_argument("--size", type=int, default=28, help="28, 64, 128 or 224 (default 28)")
    fetch.add_argument("--name", default=None, help="dataset name (default: the MedMNIST name, with _SIZE)")
    fetch.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that name")
    fetch.set_defaults(run=_run_fetch)

    listed = data_commands.add_parser("list", help="list datasets with their classes and split sizes")
    listed.add_argument("--json", action="store_true", help="print the dataset cards as JSON")
    listed.set_defaults(run=_run_list)

    show = data_commands.add_parser("show", help="print a dataset's card")
    show.add_argument("name", help="dataset name or folder")
    show.set_defaults(run=_run_show)


def _run_synth(args: argparse.Namespace) -> int:
    from xai_lab.data.synth import SynthConfig
    from xai_lab.workflows import synthesize_dataset

    config = SynthConfig(n=args.n, size=args.size, seed=args.seed, shortcut_rate=args.shortcut)
    _print_dataset_card(synthesize_dataset(_name(args.name), config, overwrite=args.overwrite).to_dict())
    return 0


def _run_import(args: argparse.Namespace) -> int:
    from xai_lab.data.importers import import_dataset

    _check_size(args.size)
    card = import_dataset(args.path, _name(args.name), classes=args.classes, size=args.size, seed=args.seed,
                          channels=args.channels, overwrite=args.overwrite,
                          allow_identifiable=args.allow_identifiable)
    _print_dataset_card(card.to_dict())
    return 0


def _run_fetch(args: argparse.Namespace) -> int:
    from xai_lab.data.fetch import fetch_medmnist

    card = fetch_medmnist(args.dataset, args.size, name=args.name and _name(args.name), overwrite=args.overwrite)
    _print_dataset_card(card.to_dict())
    return 0


def _run_list(args: argparse.Namespace) -> int:
    from xai_lab.data.storage import list_datasets
    from xai_lab.paths import data_root

    cards = list_datasets()
    if args.json:
        print(json.dumps([card.to_dict() for card in cards], indent=2))
        return 0
    if not cards:
        print(f"no datasets in {data_root()}; create one with 'xai-lab data synth --name synthetic' or 'xai-lab demo'")
        return 0
    print(f"{'name':<20} {'images':>7} {'size':>9} {'train/val/test':>16}  classes")
    for card in cards:
        per_split = "/".join(str(sum(card.counts[s].values())) for s in ("train", "val", "test"))
        size = "x".join(map(str, card.image_size))
        print(f"{card.name:<20} {card.n_images:>7} {size:>9} {per_split:>16}  {', '.join(card.class_names)}")
    return 0


def _run_show(args: argparse.Namespace) -> int:
    from xai_lab.data.storage import read_card, resolve_dataset_dir

    print(json.dumps(read_card(resolve_dataset_dir(args.name)).to_dict(), indent=2))
    return 0


# ---------------------------------------------------------------- train / evaluate


def _add_train_command(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train a calibrated classifier on a dataset",
                                description="Train a small CNN with validation checkpointing, then fit temperature "
                                            "scaling and the decision threshold on the validation split.")
    train.add_argument("--data", required=True, help="dataset name or folder")
    train.add_argument("--out", type=Path, default=None, help="model folder (default: models/<dataset name>)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 24)")
    train.add_argument("--input-size", type=int, default=None,
                       help="pixels the network reads (default: image size, at most 128)")
    train.add_argument("--threshold-rule", default="youden", help="youden (default), accuracy or half")
    train.add_argument("--prior", default="balanced",
                       help="class prevalence the calibrated probabilities hold for: balanced (default) or training")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--json", action="store_true", help="print the model card as JSON")
    train.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from xai_lab.model.training import TrainConfig
    from xai_lab.workflows import train_and_save

    overrides: dict[str, Any] = {"seed": args.seed, "input_size": args.input_size,
                                 "threshold_rule": args.threshold_rule, "calibration_prior": args.prior}
    if args.epochs is not None:
        overrides["max_epochs"] = args.epochs
    card, folder = train_and_save(args.data, args.out, TrainConfig(**overrides), progress=not args.quiet)
    print(json.dumps(card, indent=2) if args.json else describe_model_card(card, folder))
    return 0


def _add_evaluate_command(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("evaluate", help="evaluate a model on a dataset split",
                                   description="Metrics of the calibrated, thresholded model on one split.")
    evaluate.add_argument("--model", required=True, help="model folder (or model name under models/)")
    evaluate.add_argument("--data", required=True, help="dataset name, dataset folder, or an importable file/folder")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"], help="split (default test)")
    evaluate.add_argument("--external", action="store_true",
                          help="allow data other than the training dataset (same classes): external validation")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from xai_lab.model.evaluation import evaluate_split
    from xai_lab.model.storage import check_model_fits, load_model
    from xai_lab.workflows import load_for_evaluation

    model, card = load_model(args.model)
    dataset = load_for_evaluation(args.data, card["dataset"]["class_names"])
    check_model_fits(card, dataset, external=args.external)
    metrics = evaluate_split(model, dataset[args.split])
    result = {"model": card.get("name"), "dataset": dataset.name, "split": args.split, **metrics,
              "threshold": card.get("decision", {}).get("threshold"), "class_names": dataset.class_names}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{card.get('name')} on {dataset.name}/{args.split} (n={metrics['n']}):")
        print(_metrics_line(metrics))
    return 0


# ---------------------------------------------------------------- demo


def _run_demo(args: argparse.Namespace) -> int:
    from xai_lab.workflows import ensure_demo_assets

    dataset, card, folder = ensure_demo_assets(progress=not args.quiet)
    print(f"dataset '{dataset.name}': {dataset.card.n_images} images, {dataset.card.image_size[0]} px, "
          f"classes {', '.join(dataset.class_names)} ({dataset.path})")
    print(describe_model_card(card, folder))
    return run_demo_server(args)


# ---------------------------------------------------------------- output helpers


def describe_model_card(card: dict[str, Any], folder: Path) -> str:
    calibration = card["calibration"]
    test = card["metrics"]["test"]
    decision = card["decision"]
    lines = [
        f"model '{card['name']}' in {folder}",
        f"  trained on '{card['dataset']['name']}' ({', '.join(card['dataset']['class_names'])}), "
        f"input {card['preprocessing']['input_size']} px, {card['architecture']['parameters']:,} parameters, "
        f"{card['training']['epochs_run']} epochs (best {card['training']['best_epoch']}) "
        f"in {card['training']['seconds']:.0f} s",
        f"  test: {_metrics_line(test)}",
        f"  calibration: temperature {calibration['temperature']:.3f}, {calibration.get('prior', 'training')} prior; "
        f"test ECE "
        f"{calibration['test']['before']['ece']:.3f} -> {calibration['test']['after']['ece']:.3f}, "
        f"val ECE {calibration['val']['before']['ece']:.3f} -> {calibration['val']['after']['ece']:.3f}",
    ]
    if decision.get("threshold") is not None:
        lines.append(f"  decision: {decision['applies_to']} >= {decision['threshold']:.3f} ({decision['rule']} rule "
                     "on validation)")
    explanations = card.get("explanations")
    if explanations:
        evaluated = explanations["evaluated_on"]
        lines.append(f"  explanations: default method {explanations['default_method']} (measured on "
                     f"{evaluated['n_images']} '{evaluated['dataset']}' test images; see 'xai-lab explain evaluate')")
    lines += [f"  warning: {warning}" for warning in card.get("warnings", [])]
    lines.append(f"  intended use: {card['intended_use']}")
    return "\n".join(lines)


def _metrics_line(metrics: dict[str, Any]) -> str:
    def with_ci(key: str) -> str:
        value = metrics.get(key)
        if value is None:
            return f"{key} n/a"
        ci = metrics.get(f"{key}_ci")
        return f"{key} {value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    return (f"{with_ci('auroc')}, {with_ci('accuracy')}, sensitivity {metrics['sensitivity']:.3f}, "
            f"specificity {metrics['specificity']:.3f}, ECE {metrics['ece']:.3f}, Brier {metrics['brier']:.3f}, "
            f"n={metrics['n']}")


def _print_dataset_card(card: dict[str, Any]) -> None:
    counts = ", ".join(f"{split} {sum(by_class.values())}" for split, by_class in card["counts"].items())
    print(f"dataset '{card['name']}': {', '.join(card['class_names'])}; {counts}; "
          f"{card['image_size'][0]}x{card['image_size'][1]} px, {card['channels']} channel(s)")
    print(f"  source: {card['source'].get('kind')}; license: {card['license']}; split: {card['split_method']}")
    for note in card.get("notes", []):
        print(f"  note: {note}")
    print(f"  sha256 {card['sha256']}")


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",")]


def _name(name: str) -> str:
    from xai_lab.paths import check_name

    return check_name(name, "dataset name")


def _check_size(size: int | None) -> None:
    if size is not None and not 16 <= size <= 1024:
        raise ConfigError(f"--size must be between 16 and 1024 pixels, got {size}")

if __name__ == "__main__":
    sys.exit(main())
