"""Power by simulation: how often a study of a given size detects the planted effects.

For each sample size (participants per arm) and replicate, `study.planted.simulate_export`
draws a complete export from the design with the planted effects, and the same models the
report uses test the main contrasts (GEE for reliance and accuracy, the competence model for the
primary rating item, Holm within each family as in the report). Power is the share of
replicates whose Holm-adjusted p is below alpha *and* whose estimate has the planted sign; its
Monte Carlo SE is sqrt(p (1 - p) / reps). Replicates run in a process pool (they are independent).
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from xai_lab.analysis.competence import analyze_item
from xai_lab.analysis.load import clean_trials
from xai_lab.analysis.trial_models import fit_trial_models
from xai_lab.errors import ConfigError
from xai_lab.study.design import StudyDesign
from xai_lab.study.planted import PlantedEffects, simulate_export

# contrast name -> (outcome, AI correctness, planted quantity, sign of verify - rely in the odds of agreement)
TRIAL_CONTRASTS = {
    "over_reliance verify vs rely": ("agree", "AI wrong", "over_reliance"),
    "under_reliance verify vs rely": ("agree", "AI right", "under_reliance"),
}


@dataclass(frozen=True)
class PowerJob:
    design: StudyDesign
    effects: PlantedEffects
    per_arm: int
    seed: int
    alpha: float
    item: str | None


def parse_effects(specs: list[str]) -> PlantedEffects:
    """`over_reliance:rely=0.45,verify=0.25`, `competence:control=5.9,rely=3.8,verify=5.0`, `skill=0.8`."""
    defaults = PlantedEffects()
    values: dict[str, object] = {}
    per_arm = {"over_reliance", "under_reliance", "competence"}
    scalars = {"skill", "rating_sd", "rater_sd", "target_sd"}
    for spec in specs:
        name, _, per_arm_values = spec.partition(":")
        scalar, _, scalar_value = spec.partition("=")
        try:
            if name in per_arm and per_arm_values:
                pairs = (part.split("=") for part in per_arm_values.split(","))
                values[name] = {**getattr(defaults, name), **{arm.strip(): float(v) for arm, v in pairs}}
            elif scalar in scalars:
                values[scalar] = float(scalar_value)
            else:
                raise ValueError
        except ValueError:
            raise ConfigError(f"--effect {spec!r} is not understood; use e.g. over_reliance:rely=0.45,verify=0.25, "
                              "competence:control=5.9,rely=3.8,verify=5.0 or skill=0.8") from None
    return PlantedEffects(**{**defaults.__dict__, **values})


def power_table(design: StudyDesign, effects: PlantedEffects, sizes: list[int], reps: int, alpha: float = 0.05,
                seed: int = 0, item: str | None = None, workers: int = 2) -> pd.DataFrame:
    if reps < 1 or not sizes or min(sizes) < 2:
        raise ConfigError("--reps must be at least 1 and every --n at least 2 participants per arm")
    jobs = [PowerJob(design, effects, n, seed * 1_000_003 + n * 10_007 + rep, alpha, item)
            for n in sizes for rep in range(reps)]
    with ProcessPoolExecutor(max_workers=workers, initializer=_one_thread) as pool:
        outcomes = list(pool.map(_replicate, jobs, chunksize=max(1, len(jobs) // (8 * workers))))
    rows = []
    for n in sizes:
        results = [o for job, o in zip(jobs, outcomes, strict=True) if job.per_arm == n]
        for contrast in results[0]:
            hits = [r[contrast] for r in results if r.get(contrast) is not None]
            power = float(np.mean(hits)) if hits else math.nan
            rows.append({"per_arm": n, "contrast": contrast, "power": power, "reps": len(hits),
                         "mc_se": math.sqrt(power * (1 - power) / len(hits)) if hits else math.nan})
    return pd.DataFrame(rows)


def _one_thread() -> None:
    # one BLAS thread per worker: with a process per core, more threads only contend
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _replicate(job: PowerJob) -> dict[str, bool | None]:
    export = simulate_export(job.design, job.effects, job.per_arm, job.seed)
    detected: dict[str, bool | None] = {}
    if not export.trials.empty and {"verify", "rely"} <= set(job.design.arms):
        contrasts = fit_trial_models(clean_trials(export.trials), mixed=False).contrasts
        detected.update(_trial_detections(job, contrasts))
    if not export.ratings.empty:
        detected.update(_competence_detections(job, export.ratings))
    return detected


def _trial_detections(job: PowerJob, contrasts: pd.DataFrame) -> dict[str, bool | None]:
    detected: dict[str, bool | None] = {}
    for name, (outcome, ai, planted) in TRIAL_CONTRASTS.items():
        truth = getattr(job.effects, planted)
        # agreement odds, verify vs rely: over-reliance is agreement, under-reliance its complement
        sign = np.sign(truth.get("verify", 0) - truth.get("rely", 0)) * (1 if planted == "over_reliance" else -1)
        row = contrasts[(contrasts["outcome"] == outcome) & (contrasts["ai"] == ai)
                        & (contrasts["a"] == "verify") & (contrasts["b"] == "rely")] if len(contrasts) else []
        if len(row) == 0 or sign == 0:
            detected[name] = None
            continue
        row = row.iloc[0]
        detected[name] = bool(row["p_holm"] < job.alpha and np.sign(row["log_odds_ratio"]) == sign)
    return detected


def _competence_detections(job: PowerJob, ratings: pd.DataFrame) -> dict[str, bool | None]:
    items = sorted(ratings["item"].unique())
    item = job.item if job.item in items else ("competence" if "competence" in items else items[0])
    result = analyze_item(item, ratings[ratings["item"] == item].reset_index(drop=True))
    truth = job.effects.competence
    detected: dict[str, bool | None] = {}
    for contrast in result.contrasts:
        sign = np.sign(truth[contrast["a"]] - truth[contrast["b"]])
        p = contrast["p_holm"]
        detected[f"competence {contrast['a']} vs {contrast['b']}"] = (
            None if p is None or sign == 0 else bool(p < job.alpha and np.sign(contrast["estimate"]) == sign))
    return detected


def power_plot(table: pd.DataFrame, path, alpha: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6.5, 4.2))
    styles = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-")]  # lines at 1.0 overlap: tell them apart
    for k, (contrast, rows) in enumerate(table.groupby("contrast", sort=False)):
        marker, line = styles[k % len(styles)]
        ax.errorbar(rows["per_arm"], rows["power"], yerr=1.96 * rows["mc_se"], marker=marker, linestyle=line,
                    capsize=3, label=contrast, alpha=0.85)
    ax.axhline(0.8, color="#777", linestyle="--", linewidth=1)
    ax.set_xlabel("participants per arm")
    ax.set_ylabel(f"power (Holm-adjusted p < {alpha}, planted sign)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
