"""Wall time and test metrics of the default training recipe, against the foundation budgets.

    python benchmarks/train_bench.py                 # synthetic default, PneumoniaMNIST, Kermany
    python benchmarks/train_bench.py --only synthetic --seeds 0,1,2

Each run starts from an empty XAI_LAB_HOME (a temporary folder), times the data step
(generate or import) and training (fit + calibration + evaluation + saving) with the same
library calls the CLI makes, and reads the test metrics from the model card. Time is also
given as a share of the acceptance budget (synthetic 120 s including generation,
PneumoniaMNIST 180 s and Kermany 300 s of training), so runs on other machines compare.
Real datasets come from ../shared/data and are skipped, with a note, when absent.
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


TARGETS = {
    "synthetic": Target("synthetic", 120, "generation + training", _synthetic),
    "pneumonia": Target("pneumonia", 180, "training", _importer("pneumoniamnist.npz", "pneumonia"),
                        SHARED / "pneumoniamnist.npz"),
    "kermany": Target("kermany", 300, "training", _importer("kermany_cxr_test_224.npz", "kermany"),
                      SHARED / "kermany_cxr_test_224.npz"),
}


def run(target: Target, seed: int) -> dict:
    from xai_lab.model.training import TrainConfig
    from xai_lab.workflows import train_and_save

    with tempfile.TemporaryDirectory() as home:
        os.environ["XAI_LAB_HOME"] = home
        started = time.perf_counter()
        target.prepare()
        data_seconds = time.perf_counter() - started
        started = time.perf_counter()
        card, folder = train_and_save(target.name, config=TrainConfig(seed=seed), progress=False)
        train_seconds = time.perf_counter() - started
        errors = error_rates_by_difficulty(target.name, folder)
    test = card["metrics"]["test"]
    counted = train_seconds + (data_seconds if target.budget_covers.startswith("generation") else 0.0)
    return {
        "dataset": target.name, "seed": seed, "data_seconds": round(data_seconds, 1),
        "train_seconds": round(train_seconds, 1), "budget_seconds": target.budget_seconds,
        "budget_covers": target.budget_covers, "share_of_budget": round(counted / target.budget_seconds, 2),
        "epochs": card["training"]["epochs_run"], "best_epoch": card["training"]["best_epoch"],
        "auroc": test["auroc"], "accuracy": test["accuracy"], "sensitivity": test["sensitivity"],
        "specificity": test["specificity"], "ece": test["ece"], "brier": test["brier"], "n_test": test["n"],
        "ece_before_scaling": card["calibration"]["test"]["before"]["ece"],
        "temperature": card["calibration"]["temperature"], "threshold": card["decision"]["threshold"],
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
    for label, class_name in enumerate(card["dataset"]["class_names"]):
        for level in ("easy", "moderate", "hard"):
            rows = (test.labels.numpy() == label) & (test.metadata["difficulty"] == level)
            if rows.any():
                rates[f"{class_name}/{level}"] = {"n": int(rows.sum()), "error": round(float(wrong[rows].mean()), 3)}
    return rates


def markdown(rows: list[dict]) -> str:
    header = ("| dataset | seed | data s | train s | share of budget | epochs | test AUROC | accuracy | "
              "sensitivity | specificity | ECE (before -> after) | Brier |")
    lines = [header, "|" + "|".join(["---"] * 12) + "|"]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['seed']} | {r['data_seconds']} | {r['train_seconds']} | "
            f"{r['share_of_budget']:.2f} of {r['budget_seconds']:.0f} s ({r['budget_covers']}) | "
            f"{r['epochs']} (best {r['best_epoch']}) | {r['auroc']:.3f} | {r['accuracy']:.3f} | "
            f"{r['sensitivity']:.3f} | {r['specificity']:.3f} | {r['ece_before_scaling']:.3f} -> {r['ece']:.3f} | "
            f"{r['brier']:.3f} |"
        )
    with_difficulty = [r for r in rows if r.get("test_error_by_difficulty")]
    if with_difficulty:
        groups = list(with_difficulty[0]["test_error_by_difficulty"])
        lines += ["", "Test error rate by class and difficulty (n in brackets):", "",
                  "| dataset | seed | " + " | ".join(groups) + " |", "|" + "|".join(["---"] * (len(groups) + 2)) + "|"]
        for r in with_difficulty:
            cells = [f"{r['test_error_by_difficulty'][g]['error']:.2f} ({r['test_error_by_difficulty'][g]['n']})"
                     if g in r["test_error_by_difficulty"] else "-" for g in groups]
            lines.append(f"| {r['dataset']} | {r['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(TARGETS), action="append", help="run only these datasets")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds (default 0)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results",
                        help="folder for train_bench.json (default benchmarks/results)")
    args = parser.parse_args()
    rows = []
    for key in args.only or list(TARGETS):
        target = TARGETS[key]
        if target.needs is not None and not target.needs.is_file():
            print(f"skipping {key}: {target.needs} is absent (see ../shared/README.md)", file=sys.stderr)
            continue
        for seed in (int(s) for s in args.seeds.split(",")):
            rows.append(run(target, seed))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_bench.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
