"""Roe-Metz simulation of reader studies, for the type I error of the MRMC test and for power.

    structure = VARIANCE_STRUCTURES["medium"]
    study = simulate_reader_study(structure, readers=5, cases=100, aucs=(0.75, 0.80), rng=rng)
    table = mrmc_power(structure, delta_auc=0.05, readers=[4, 8], cases=[50, 100], reps=500)

The Roe & Metz (1997) model: a reader's latent score for case k in modality i is
X_ijk = μ_i d_k + R_j + TR_ij + C_k + TC_ik + RC_jk + E_ijk, with d_k = 1 for abnormal cases.
Every random term is normal with its own variance and is drawn separately for normal and
abnormal cases (so reader effects move a reader's two distributions apart or together, which is
what makes readers' AUCs differ), as in the Roe-Metz equal-variance binormal model. The case terms'
variances sum to 1 per truth state, so each reader's expected AUC is Φ(μ_i / √2) before reader
effects: μ_i = √2 Φ⁻¹(AUC_i). A split-plot study gives each reader one modality.

The named structures cross reader variability with case correlation in the way Roe & Metz and
Hillis (2018) organise theirs; the values below are this lab's choice within that scheme, not a
copy of a published table - give your own with `VarianceStructure(...)` or `--variance`.
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from xai_lab.analysis.mrmc import or_analysis
from xai_lab.analysis.reader_study import ReaderStudy
from xai_lab.errors import ConfigError


@dataclass(frozen=True)
class VarianceStructure:
    """Variances of the Roe-Metz terms (latent score scale; the four case terms sum to 1)."""

    reader: float  # R
    reader_modality: float  # TR
    case: float  # C
    case_modality: float  # TC
    reader_case: float  # RC
    error: float  # E

    def __post_init__(self) -> None:
        values = asdict(self)
        if any(v < 0 for v in values.values()):
            raise ConfigError(f"variance components must be zero or positive, got {values}")
        case_total = self.case + self.case_modality + self.reader_case + self.error
        if not math.isclose(case_total, 1.0, abs_tol=1e-6):
            raise ConfigError(f"the four case terms (C, TC, RC, E) must sum to 1, got {case_total:g}; rescale them")


# Reader terms sized so that, at an AUC near 0.75 (d AUC / d mu ~ 0.225), the OR reader variance
# var_R ~ 0.101 * sigma2_R and the treatment-by-reader variance var_TR ~ 0.101 * sigma2_TR fall in
# the range reader studies report (var_TR a few 1e-4 to 1e-3; e.g. Franken: var_R 4e-5).
VARIANCE_STRUCTURES = {
    # low reader variability, low case correlation
    "low": VarianceStructure(0.005, 0.002, 0.1, 0.1, 0.2, 0.6),
    # moderate reader variability, moderate case correlation (the default)
    "medium": VarianceStructure(0.015, 0.005, 0.3, 0.1, 0.2, 0.4),
    # high reader variability, high case correlation
    "high": VarianceStructure(0.03, 0.01, 0.5, 0.1, 0.1, 0.3),
}


def simulate_reader_study(structure: VarianceStructure, readers: int | tuple[int, ...], cases: int,
                          aucs: tuple[float, ...], rng: np.random.Generator, design: str = "crossed",
                          abnormal_share: float = 0.5, reader_sd_scale: tuple[float, ...] | None = None
                          ) -> ReaderStudy:
    """One simulated study; `readers` per modality for split-plot (one number, or one per modality),
    in total for crossed. `reader_sd_scale` (split-plot) multiplies the SD of the reader terms (R, TR)
    of each modality's readers: arms whose readers differ more. Larger reader terms pull a reader's
    AUC towards 0.5 on average, so with `reader_sd_scale` the AUCs are the expected AUCs over readers:
    μ_i = Φ⁻¹(AUC_i) √(2 + 2 (σ²_R + σ²_TR) s_i²), and equal AUCs are a true null."""
    t = len(aucs)
    n_abnormal = max(2, round(cases * abnormal_share))
    truth = np.arange(cases) < n_abnormal
    spread = 2.0 if reader_sd_scale is None else \
        2.0 + 2.0 * (structure.reader + structure.reader_modality) * np.asarray(reader_sd_scale, float) ** 2
    shift = np.sqrt(spread) * stats.norm.ppf(np.asarray(aucs, float))  # μ_i
    per_modality = readers if isinstance(readers, tuple) else (readers,) * t
    own = np.repeat(np.arange(t), per_modality)  # split-plot: reader j reads modality own[j] only
    total_readers = len(own) if design == "split-plot" else int(per_modality[0])
    scale = np.ones(total_readers)
    if reader_sd_scale is not None and design == "split-plot":
        scale = np.asarray(reader_sd_scale, float)[own]
    scores = np.zeros((t, total_readers, cases))
    for state in (False, True):  # every term drawn separately for normal and abnormal cases
        group = truth == state
        n = int(group.sum())
        sd = {k: math.sqrt(v) for k, v in asdict(structure).items()}
        term = (scale[None, :, None] * (rng.normal(0, sd["reader"], (1, total_readers, 1))
                                        + rng.normal(0, sd["reader_modality"], (t, total_readers, 1)))
                + rng.normal(0, sd["case"], (1, 1, n)) + rng.normal(0, sd["case_modality"], (t, 1, n))
                + rng.normal(0, sd["reader_case"], (1, total_readers, n))
                + rng.normal(0, sd["error"], (t, total_readers, n)))
        scores[:, :, group] = term + (shift[:, None, None] if state else 0.0)
    if design == "split-plot":
        scores[np.arange(t)[:, None] != own[None, :]] = np.nan
    names = tuple(f"m{i}" for i in range(t))
    return ReaderStudy(names, tuple(f"r{j}" for j in range(total_readers)), tuple(f"c{k}" for k in range(cases)),
                       truth, scores, design)


@dataclass(frozen=True)
class PowerJob:
    structure: VarianceStructure
    readers: int
    cases: int
    aucs: tuple[float, ...]
    reps: int
    alpha: float
    seed: int
    design: str
    abnormal_share: float = 0.5


def rejection_rate(job: PowerJob) -> float:
    """Share of `job.reps` simulated studies whose random-reader, random-case OR test rejects at alpha."""
    rng = np.random.default_rng(job.seed)
    rejected = 0
    for _ in range(job.reps):
        study = simulate_reader_study(job.structure, job.readers, job.cases, job.aucs, rng, job.design,
                                      job.abnormal_share)
        rejected += or_analysis(study, "auc", job.alpha).random.p_value < job.alpha
    return rejected / job.reps


def mrmc_power(structure: VarianceStructure, delta_auc: float, readers: list[int], cases: list[int], reps: int,
               alpha: float = 0.05, base_auc: float = 0.75, design: str = "crossed", seed: int = 0,
               workers: int | None = None, abnormal_share: float = 0.5) -> pd.DataFrame:
    """Power (and its Monte Carlo SE) for each readers x cases size; delta_auc = 0 gives the type I error."""
    if not 0.5 <= base_auc < 1 or not 0.5 <= base_auc + delta_auc < 1:
        raise ConfigError(f"the AUCs must lie in [0.5, 1): base {base_auc} and base + delta {base_auc + delta_auc}")
    if design not in ("crossed", "split-plot"):
        raise ConfigError(f"design must be crossed or split-plot, got {design!r}")
    if min(readers) < 2 or min(cases) < 4 or reps < 1:
        raise ConfigError("readers must be at least 2 (per modality in split-plot), cases at least 4, reps at least 1")
    if not 0 < abnormal_share < 1:
        raise ConfigError(f"--abnormal-share must be between 0 and 1, got {abnormal_share}")
    jobs = [PowerJob(structure, r, c, (base_auc, base_auc + delta_auc), reps, alpha, seed + 1000 * i, design,
                     abnormal_share)
            for i, (r, c) in enumerate((r, c) for r in readers for c in cases)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        rates = list(pool.map(rejection_rate, jobs))
    return pd.DataFrame([{"readers": job.readers, "cases": job.cases, "design": design, "delta_auc": delta_auc,
                          "power": rate, "mc_se": math.sqrt(rate * (1 - rate) / reps), "reps": reps}
                         for job, rate in zip(jobs, rates, strict=True)])


def mrmc_power_plot(table: pd.DataFrame, path, alpha: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6, 3.6))
    for readers, rows in table.groupby("readers"):
        ax.errorbar(rows["cases"], rows["power"], yerr=1.96 * rows["mc_se"], marker="o", capsize=3,
                    label=f"{readers} readers")
    ax.axhline(0.8, color="grey", lw=0.8, ls="--")
    ax.set_ylim(0, 1)
    ax.set_xlabel("cases")
    ax.set_ylabel(f"power (alpha {alpha:g})")
    ax.set_title(f"MRMC power, ΔAUC = {table['delta_auc'].iloc[0]:g} ({table['design'].iloc[0]})", fontsize=10)
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
