"""`xai-lab train` and `xai-lab evaluate`, and the model card as a terminal reads it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI imports numpy only when a command needs it (start-up time)
    import numpy as np

    from xai_lab.model.card import ModelCard


def add_train_command(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train a calibrated classifier on a dataset",
                                description="Train a small CNN (an ensemble of three under 1,000 training images) "
                                            "for a fixed number of epochs, keep the best validation epoch, then fit "
                                            "temperature scaling and the decision threshold on the validation split. "
                                            "Nothing depends on the clock: a seed gives the same model whether the "
                                            "machine is idle or busy.")
    train.add_argument("--data", required=True, help="dataset name or folder")
    train.add_argument("--out", type=Path, default=None, help="model folder (default: models/<dataset name>)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--epochs", type=int, default=None, help="epochs (default 24)")
    train.add_argument("--input-size", type=int, default=None,
                       help="pixels the network reads (default: image size, at most 128)")
    train.add_argument("--threshold-rule", default="youden", help="youden (default), accuracy or half")
    train.add_argument("--prior", default="balanced",
                       help="class prevalence the calibrated probabilities hold for: balanced (default) or training")
    train.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                       help="a hard wall-clock limit for fitting and calibration: the epochs that fit are "
                            "planned from measured epoch times, so the model then depends on the machine's speed "
                            "and load (default: none; --epochs decides)")
    train.add_argument("--batch-size", type=int, default=None,
                       help="images per optimiser step (default: 32 under 2,000 training images, else 64)")
    train.add_argument("--learning-rate", type=float, default=None,
                       help="peak of the one-cycle schedule (default: 3e-3 at 64 a batch, scaled by the square root "
                            "of the batch size)")
    train.add_argument("--members", type=int, default=None,
                       help="networks in the deep ensemble, probabilities averaged (default: 3 under 1,000 "
                            "training images, else 1; see docs/benchmarks.md)")
    train.add_argument("--backbone", default=None, choices=["small_cnn", "resnet18"],
                       help="small_cnn (default) or resnet18: torchvision's ResNet-18 with ImageNet weights, "
                            "downloaded once (needs a network the first time)")
    train.add_argument("--label-smoothing", type=float, default=None, help="label smoothing of the training loss "
                                                                           "(default 0)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--json", action="store_true", help="print the model card as JSON")
    train.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from xai_lab.model.training import TrainConfig
    from xai_lab.workflows import train_and_save

    overrides: dict[str, Any] = {"seed": args.seed, "input_size": args.input_size,
                                 "threshold_rule": args.threshold_rule, "calibration_prior": args.prior}
    optional = {"max_epochs": args.epochs, "time_budget": args.time_budget, "members": args.members,
                "batch_size": args.batch_size, "learning_rate": args.learning_rate,
                "label_smoothing": args.label_smoothing, "backbone": args.backbone}
    overrides.update({key: value for key, value in optional.items() if value is not None})
    card, folder = train_and_save(args.data, args.out, TrainConfig(**overrides), progress=not args.quiet)
    print(json.dumps(card.to_json(), indent=2) if args.json else describe_model_card(card, folder))
    return 0


def add_evaluate_command(commands: argparse._SubParsersAction) -> None:
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
    dataset = load_for_evaluation(args.data, list(card.dataset.class_names))
    check_model_fits(card, dataset, external=args.external)
    metrics = evaluate_split(model, dataset[args.split], prevalence=card_prevalence(card))
    result = {"model": card.name, "dataset": dataset.name, "split": args.split, **metrics,
              "threshold": card.decision.threshold, "class_names": dataset.class_names}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{card.name} on {dataset.name}/{args.split} (n={metrics['n']}):")
        print(metrics_line(metrics))
    return 0


def card_prevalence(card: ModelCard) -> np.ndarray | None:
    """The class mix the model's probabilities hold for, from its card (None on cards without it)."""
    from xai_lab.model.calibration import prior_prevalence

    calibration = card.calibration
    classes = card.dataset.class_names
    training = calibration.get("training_prevalence")
    if not training or not classes:
        return None
    return prior_prevalence(calibration.get("prior", "training"), [training[c] for c in classes])


def describe_model_card(card: ModelCard, folder: Path) -> str:
    if card.architecture.get("backbone") == "imported":
        return _describe_imported(card, folder)
    calibration, training = card.calibration, card.training
    test = card.split_metrics("test")
    decision = card.decision
    lines = [
        f"model '{card.name}' in {folder}",
        f"  trained on '{card.dataset.name}' ({', '.join(card.dataset.class_names)}), "
        f"input {card.preprocessing.input_size} px, {card.architecture['parameters']:,} parameters, "
        f"{training['epochs_run']} epochs (best {training['best_epoch']}) "
        f"in {training['seconds']:.0f} s",
        f"  test: {metrics_line(test)}",
        f"  calibration: temperature {calibration['temperature']:.3f}, {calibration.get('prior', 'training')} prior; "
        f"test ECE "
        f"{calibration['test']['before']['ece']:.3f} -> {calibration['test']['after']['ece']:.3f}, "
        f"val ECE {calibration['val']['before']['ece']:.3f} -> {calibration['val']['after']['ece']:.3f}",
    ]
    budget = training.get("budget")
    if budget and budget["seconds"] is not None:
        lines.append(f"  time budget: {budget['seconds']:.0f} s ({budget['source']}); "
                     + (budget["cut"] or f"all {budget['max_epochs']} epochs fitted"))
    if training.get("members_source"):
        lines.append(f"  ensemble: {card.architecture.get('members', 1)} member(s), {training['members_source']}")
    claim = calibration.get("claim")
    if claim:
        lines.append(f"  calibration claim {'shown' if claim['supported'] else 'withheld'} on the trial screen: "
                     f"{claim['reason']}")
    if decision.threshold is not None:
        lines.append(f"  decision: {decision.applies_to} >= {decision.threshold:.3f} ({decision.rule} rule "
                     "on validation)")
    explanations = card.explanations
    if explanations:
        evaluated = explanations["evaluated_on"]
        lines.append(f"  explanations: default method {explanations['default_method']} (measured on "
                     f"{evaluated['n_images']} '{evaluated['dataset']}' test images; see 'xai-lab explain evaluate')")
    lines += [f"  warning: {warning}" for warning in card.warnings]
    lines.append(f"  intended use: {card.intended_use}")
    return "\n".join(lines)


def _describe_imported(card: ModelCard, folder: Path) -> str:
    from xai_lab.model.importing import describe_import

    decision = card.decision
    lines = [f"model '{card.name}' in {folder} (imported)",
             f"  evaluated on '{card.dataset.name}' ({', '.join(card.dataset.class_names)}), input "
             f"{card.preprocessing.input_size} px, {card.architecture['parameters']:,} parameters",
             f"  val:  {metrics_line(card.split_metrics('val'))}",
             f"  test: {metrics_line(card.split_metrics('test'))}", *describe_import(card)]
    if decision.threshold is not None:
        lines.append(f"  decision: {decision.applies_to} >= {decision.threshold:.3f} ({decision.rule})")
    lines += [f"  warning: {warning}" for warning in card.warnings]
    lines.append(f"  intended use: {card.intended_use}")
    return "\n".join(lines)


def metrics_line(metrics: dict[str, Any]) -> str:
    def with_ci(key: str) -> str:
        value = metrics.get(key)
        if value is None:
            return f"{key} n/a"
        ci = metrics.get(f"{key}_ci")
        return f"{key} {value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    return (f"{with_ci('auroc')}, {with_ci('accuracy')}, sensitivity {metrics['sensitivity']:.3f}, "
            f"specificity {metrics['specificity']:.3f}, {with_ci('ece').replace('ece', 'ECE')}, "
            f"Brier {metrics['brier']:.3f}, "
            f"n={metrics['n']}")


