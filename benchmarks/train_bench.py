"""Wall time and test metrics of training recipes on three data sets, against the time budgets.

    python benchmarks/train_bench.py                          # default recipe, three data sets, seed 0
    python benchmarks/train_bench.py --seeds 0,1,2 --recipes old,new
    python benchmarks/train_bench.py --only pneumonia --recipes new,members3,smooth

Each data set is generated or imported once into an empty XAI_LAB_HOME (a temporary folder);
each (recipe, seed) run then times training (fit + calibration + evaluation + saving, the same
library call `xai-lab train` makes) and reads the test metrics, with bootstrap 95% CIs, from the
model card. Recipes are `TrainConfig` overrides (RECIPES): "new" is the default, "old" the recipe
before the time budget (24 epochs at most, one network). Time is also given as a share of the
acceptance budget (synthetic 120 s including generation, PneumoniaMNIST 120 s of training,
Kermany 300 s), so runs on other machines compare. Real datasets come from ../shared/data and
are skipped, with a note, when absent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


@dataclass(frozen=True)
class Target:
    name: str
    budget_seconds: float
    budget_covers: str
    prepare: Callable[[], None]  # creates the dataset named `name` in the current XAI_LAB_HOME
    needs: Path | None = None


def _synthetic() -> None:
    from xai_lab.data.synth import SynthConfig
    from xai_lab.workflows import synthesize_dataset

    synthesize_dataset("synthetic", SynthConfig())


def _importer(file_name: str, dataset_name: str) -> Callable[[], None]:
    def prepare() -> None:
        from xai_lab.data.importers import import_dataset

        import_dataset(SHARED / file_name, dataset_name)

    return prepare


def _pneumonia_small() -> None:
    """PneumoniaMNIST cut to BreastMNIST's size (546 train, 78 val; stratified, seed 0), full test split:
    a small data set to tune on, so a recipe chosen on PneumoniaMNIST is not chosen for its size alone."""
    import numpy as np

    from xai_lab.data.importers import import_dataset

    rng = np.random.default_rng(0)
    arrays = dict(np.load(SHARED / "pneumoniamnist.npz"))
    for split, n in (("train", 546), ("val", 78)):
        labels = arrays[f"{split}_labels"].ravel()
        keep = np.concatenate([rng.choice(np.flatnonzero(labels == c), round(n * np.mean(labels == c)), replace=False)
                               for c in (0, 1)])
        for kind in ("images", "labels"):
            arrays[f"{split}_{kind}"] = arrays[f"{split}_{kind}"][keep]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pneumoniamnist_small.npz"
        np.savez(path, **arrays)
        import_dataset(path, "pneumonia-small")


TARGETS = {
    "synthetic": Target("synthetic", 120, "generation + training", _synthetic),
    "pneumonia": Target("pneumonia", 120, "training", _importer("pneumoniamnist.npz", "pneumonia"),
                        SHARED / "pneumoniamnist.npz"),
    "pneumonia-small": Target("pneumonia-small", 120, "training", _pneumonia_small, SHARED / "pneumoniamnist.npz"),
    "kermany": Target("kermany", 300, "training", _importer("kermany_cxr_test_224.npz", "kermany"),
                      SHARED / "kermany_cxr_test_224.npz"),
}


EARLY_STOP = {"patience": 6, "checkpoint": "val_loss"}
# TrainConfig overrides. "new" is the default (issue 24: fixed epochs, batch and rate by the data's size);
# "old": the recipe before issue 16 (64 a batch, an hour's budget never binds; early stopping);
# "batch64": the default with issue 16's batch and rate for every size (no budget), which small sets
# such as the synthetic one need too few optimiser steps with (docs/benchmarks.md).
RECIPES: dict[str, dict] = {
    "new": {},
    "old": {"time_budget": 3600.0, "members": 1, "patience": 6, "checkpoint": "val_loss", "batch_size": 64,
            "learning_rate": 3e-3},
    "batch64": {"batch_size": 64, "learning_rate": 3e-3},
    # one change at a time from "new", for the choices in docs/benchmarks.md
    "single": {"members": 1},
    "members3": {"members": 3},
    "members3-long": {"members": 3, "time_budget": 240.0},
    "smooth": {"label_smoothing": 0.1},
    "early-stop": {"patience": 6, "checkpoint": "val_loss"},
    "unscaled-checkpoint": {"checkpoint": "val_loss"},
}


def run_all(target: Target, recipes: list[str], seeds: list[int], extra: dict | None = None) -> list[dict]:
    """Prepare the data set once, then train every (recipe, seed) on it."""
    rows = []
    with tempfile.TemporaryDirectory() as home:
        os.environ["XAI_LAB_HOME"] = home
        started = time.perf_counter()
        target.prepare()
        data_seconds = time.perf_counter() - started
        for recipe in recipes:
            for seed in seeds:
                rows.append(run(target, recipe, seed, data_seconds, extra or {}))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def run(target: Target, recipe: str, seed: int, data_seconds: float, extra: dict) -> dict:
    from xai_lab.model.training import TrainConfig
    from xai_lab.workflows import train_and_save

    config = TrainConfig(**{"seed": seed, **RECIPES[recipe], **extra})
    started = time.perf_counter()
    card, folder = train_and_save(target.name, Path(os.environ["XAI_LAB_HOME"]) / "models" / f"{recipe}-{seed}",
                                  config=config, progress=False)
    train_seconds = time.perf_counter() - started
    errors = error_rates_by_difficulty(target.name, folder)
    test = card.metrics["test"]
    counted = train_seconds + (data_seconds if target.budget_covers.startswith("generation") else 0.0)
    budget = card.training.get("budget") or {}
    return {
        "dataset": target.name, "recipe": recipe, "seed": seed, "config": config.to_dict(),
        "data_seconds": round(data_seconds, 1), "train_seconds": round(train_seconds, 1),
        "budget_seconds": target.budget_seconds, "budget_covers": target.budget_covers,
        "share_of_budget": round(counted / target.budget_seconds, 2),
        "time_budget": budget.get("seconds"), "planned_epochs": budget.get("planned_epochs"),
        "epochs": card.training["epochs_run"], "best_epoch": card.training["best_epoch"],
        "auroc": test["auroc"], "auroc_ci": test.get("auroc_ci"), "accuracy": test["accuracy"],
        "accuracy_ci": test.get("accuracy_ci"), "sensitivity": test["sensitivity"],
        "specificity": test["specificity"], "ece": test["ece"], "ece_ci": test.get("ece_ci"),
        "ece_at_prior": test.get("ece_at_prior"), "ece_at_prior_ci": test.get("ece_at_prior_ci"),
        "members": card.architecture.get("members", 1), "budget_cut": budget.get("cut"),
        "brier": test["brier"], "nll": test["nll"], "n_test": test["n"],
        "ece_before_scaling": card.calibration["test"]["before"]["ece"],
        "val_ece_after": card.calibration["val"]["after"]["ece"],
        "temperature": card.calibration["temperature"], "threshold": card.decision.threshold,
        "claim_supported": card.calibration["claim"]["supported"],
        "test_error_by_difficulty": errors,
    }


def error_rates_by_difficulty(dataset_name: str, model_folder: Path) -> dict | None:
    """Test error rate per (class, difficulty) for datasets with difficulty metadata (synthetic)."""
    from xai_lab import load_dataset, load_model

    test = load_dataset(dataset_name)["test"]
    if "difficulty" not in test.metadata:
        return None
    model, card = load_model(model_folder)
    wrong = (model.decide(model.predict_proba(test.images)) != test.labels).numpy()
    rates = {}
    for label, class_name in enumerate(card.dataset.class_names):
        for level in ("easy", "moderate", "hard"):
            rows = (test.labels.numpy() == label) & (test.metadata["difficulty"] == level)
            if rows.any():
                rates[f"{class_name}/{level}"] = {"n": int(rows.sum()), "error": round(float(wrong[rows].mean()), 3)}
    return rates


def markdown(rows: list[dict]) -> str:
    def ci(row: dict, key: str) -> str:
        interval = row.get(f"{key}_ci")
        return f"{row[key]:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")

    header = ("| dataset | recipe | seed | train s | share of budget | members | epochs (planned, best) | "
              "test AUROC [95% CI] | accuracy [95% CI] | ECE [95% CI] | ECE at prior [95% CI] | Brier | claim |")
    lines = [header, "|" + "|".join(["---"] * 13) + "|"]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['recipe']} | {r['seed']} | {r['train_seconds']} | "
            f"{r['share_of_budget']:.2f} of {r['budget_seconds']:.0f} s | {r['members']} | "
            f"{r['epochs']} ({r['planned_epochs']}, {r['best_epoch']}) | {ci(r, 'auroc')} | {ci(r, 'accuracy')} | "
            f"{ci(r, 'ece')} | {ci(r, 'ece_at_prior')} | {r['brier']:.3f} | "
            f"{'shown' if r['claim_supported'] else 'withheld'} |"
        )
    with_difficulty = [r for r in rows if r.get("test_error_by_difficulty")]
    if with_difficulty:
        groups = list(with_difficulty[0]["test_error_by_difficulty"])
        lines += ["", "Test error rate by class and difficulty (n in brackets):", "",
                  "| dataset | recipe, seed | " + " | ".join(groups) + " |",
                  "|" + "|".join(["---"] * (len(groups) + 2)) + "|"]
        for r in with_difficulty:
            cells = [f"{r['test_error_by_difficulty'][g]['error']:.2f} ({r['test_error_by_difficulty'][g]['n']})"
                     if g in r["test_error_by_difficulty"] else "-" for g in groups]
            lines.append(f"| {r['dataset']} | {r['recipe']} {r['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(TARGETS), action="append", help="run only these datasets")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds (default 0)")
    parser.add_argument("--recipes", default="new", help=f"comma-separated recipes of {', '.join(RECIPES)} "
                                                          "(default new)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results",
                        help="folder for train_bench.json (default benchmarks/results)")
    parser.add_argument("--early-stop", action="store_true",
                        help="add the old stopping rules to every recipe (patience 6, plain validation NLL)")
    parser.add_argument("--table", type=Path, default=None,
                        help="print the markdown table of a saved train_bench.json and exit (trains nothing)")
    args = parser.parse_args()
    if args.table is not None:
        print(markdown(json.loads(args.table.read_text())))
        return 0
    recipes = args.recipes.split(",")
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe {unknown[0]!r}; choose from {', '.join(RECIPES)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for key in args.only or list(TARGETS):
        target = TARGETS[key]
        if target.needs is not None and not target.needs.is_file():
            print(f"skipping {key}: {target.needs} is absent (see ../shared/README.md)", file=sys.stderr)
            continue
        rows += run_all(target, recipes, seeds, EARLY_STOP if args.early_stop else None)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_bench.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
