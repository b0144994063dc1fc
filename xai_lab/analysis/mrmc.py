"""Obuchowski-Rockette (OR) analysis of a multi-reader multi-case study, with Hillis's degrees of freedom.

    study = reader_study(frame, reader=..., case=..., truth=..., score=..., modality=...)
    result = or_analysis(study, fom="auc")
    result.random.p_value            # readers and cases random: results generalise to both populations
    result.to_json()                 # the `xai-lab mrmc --json` object

Each reader's figure of merit (FOM, e.g. AUC) per modality is modelled as
θ_ij = μ + τ_i + R_j + (τR)_ij + ε_ij, where the errors ε carry the case-sampling variability and
are correlated because the same cases are read: Var, Cov1 (same reader, different modality), Cov2
(different reader, same modality) and Cov3 (different reader and modality), estimated by
jackknifing cases (Obuchowski & Rockette 1995; Hillis 2005, 2007).

- **Random readers and random cases** (Hillis 2007): F = MS(T) / [MS(T*R) + r max(Cov2 - Cov3, 0)],
  ddf_H = [MS(T*R) + r max(Cov2 - Cov3, 0)]^2 / {MS(T*R)^2 / [(t-1)(r-1)]}.
- **Fixed readers** (random cases): X2 = (t-1) MS(T) / [Var - Cov1 + (r-1) max(Cov2 - Cov3, 0)], chi-square.
- **Fixed cases** (random readers): F = MS(T) / MS(T*R) on (t-1), (t-1)(r-1) df.
- Single-modality CIs use that modality's reader mean square and Cov2 (Hillis 2007's ddf_H_single).

**Split-plot** (readers nested in modalities, each reading every case: a between-arm reader
study) follows the same model without a reader-by-modality term or Cov1. For the difference of two
modality means, Var = MS(R)_a / r_a + MS(R)_b / r_b + 2 max(Cov2 - Cov3, 0), each modality's reader
mean square on its own r_i - 1 df, with the Satterthwaite ddf
(Var)^2 / [(MS(R)_a / r_a)^2 / (r_a - 1) + (MS(R)_b / r_b)^2 / (r_b - 1)] (the unequal-readers form of
Obuchowski's and Hillis's split-plot analyses; the Welch correction of a two-sample t). With equal
numbers of readers the mean squares are pooled, MS(R(T)) on sum(r_i - 1) df, which is exactly
Hillis's statistic with MS(R(T)) in place of MS(T*R): with equal r the pooled variance is the same
sum, and pooling is what the published analyses do. Pooling unequal arms gave a type I error of
0.107 with 3 vs 8 readers and a reader SD ratio of 2 (0.159 at 3): the small arm's readers, when
they vary more, were credited with the large arm's precision.

All three generalisations share one representation: the covariance of the modality means is
diag(s_i) + c I (plus a constant that cancels in every contrast), where s_i carries the reader
(mean-square) part on `df_ms` degrees of freedom and c the case part; contrasts, the overall Wald F
and their ddf follow from it. The DBM pseudovalue analysis (`xai_lab.analysis.dbm`) is computed
independently and gives the same F and ddf (a test checks it to 1e-9).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
from scipy import stats

from xai_lab.analysis.behrens_fisher import generalised_test
from xai_lab.analysis.fom import figures_of_merit, jackknifed_cases
from xai_lab.analysis.jackknife import Covariances, ReaderContrast, jackknife_covariances, reader_contrasts
from xai_lab.analysis.reader_study import ReaderStudy

GENERALISATIONS = ("random", "fixed_readers", "fixed_cases")
# Split-plot arms of fewer readers get the generalised (Behrens-Fisher) test: with 3 readers against 8
# and a reader SD ratio of 3, Satterthwaite's df rejected a true null in 0.083 of Roe-Metz studies.
MIN_READERS_FOR_SATTERTHWAITE = 6


@dataclass(frozen=True)
class Estimate:
    name: str
    value: float
    se: float
    df: float | None  # None: normal reference (infinite df)
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Contrast:
    a: str
    b: str
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    F: float
    ndf: int
    ddf: float | None
    p_value: float


@dataclass(frozen=True)
class Inference:
    """One generalisation: the global test, per-modality CIs and every pairwise contrast."""

    F: float
    ndf: int
    ddf: float | None  # None: chi-square test (fixed readers), X2 = ndf * F
    p_value: float
    modalities: tuple[Estimate, ...]
    contrasts: tuple[Contrast, ...]


@dataclass(frozen=True)
class MRMCResult:
    fom: str
    design: str
    modalities: tuple[str, ...]
    readers: tuple[str, ...]
    n_cases: int
    n_abnormal: int
    theta: np.ndarray  # (modalities, readers), NaN where not read
    covariances: Covariances
    case_classes: dict[str, Covariances]  # the part of each covariance carried by abnormal / normal cases
    mean_squares: dict[str, float | None]
    variance_components: dict[str, float | None]
    random: Inference
    fixed_readers: Inference
    fixed_cases: Inference
    alpha: float = 0.05
    notes: list[str] = field(default_factory=list)
    reader_contrasts: tuple[ReaderContrast, ...] = ()  # crossed designs: each reader's own contrasts

    def reader_foms(self) -> dict[str, dict[str, float]]:
        return {m: {r: float(self.theta[i, j]) for j, r in enumerate(self.readers) if not np.isnan(self.theta[i, j])}
                for i, m in enumerate(self.modalities)}

    def to_json(self) -> dict[str, Any]:
        random = self.random
        return {
            "method": "OR", "fom": self.fom, "design": self.design, "n_readers": len(self.readers),
            "n_cases": self.n_cases, "n_abnormal": self.n_abnormal, "alpha": self.alpha,
            "modalities": {e.name: {self.fom: e.value, "se": e.se, "df": e.df, "ci_low": e.ci_low,
                                    "ci_high": e.ci_high} for e in random.modalities},
            "F": random.F, "ndf": random.ndf, "ddf": random.ddf, "p_value": random.p_value,
            "contrasts": [_contrast_json(c) for c in random.contrasts],
            "variance_components": {"var": self.covariances.var, "cov1": self.covariances.cov1,
                                    "cov2": self.covariances.cov2, "cov3": self.covariances.cov3,
                                    **self.mean_squares, **self.variance_components},
            "fixed_readers": {**_inference_json(self.fixed_readers, self.fom),
                              "reader_contrasts": [asdict(c) for c in self.reader_contrasts]},
            "fixed_cases": _inference_json(self.fixed_cases, self.fom),
            "case_classes": {name: {"var": part.var, "cov1": part.cov1, "cov2": part.cov2, "cov3": part.cov3}
                             for name, part in self.case_classes.items()},
            "readers": self.reader_foms(), "notes": list(self.notes),
        }


def or_analysis(study: ReaderStudy, fom: str = "auc", alpha: float = 0.05) -> MRMCResult:
    """The OR analysis of a crossed or split-plot reader study (see the module docstring)."""
    theta, deleted = figures_of_merit(study, fom)
    covariances = jackknife_covariances(deleted, study.reads)
    abnormal = study.truth[jackknifed_cases(study, fom)]
    case_classes = {"abnormal": jackknife_covariances(deleted, study.reads, abnormal),
                    "normal": jackknife_covariances(deleted, study.reads, ~abnormal)}
    counts = study.reads.sum(axis=1).astype(float)  # readers per modality
    means = np.nanmean(theta, axis=1)
    reader_ms = np.array([np.nanvar(theta[i], ddof=1) for i in range(len(means))])  # MS(R) per modality
    crossed = study.design == "crossed"
    squares, ms, df_ms = _crossed_mean_squares(theta) if crossed else _nested_mean_squares(theta, counts)
    shared = max(covariances.cov2 - covariances.cov3, 0.0)
    if crossed:  # Var(mean_a - mean_b) = 2/r [Var - Cov1 + (r-1) max(Cov2 - Cov3, 0)]
        fixed_readers = _MeanCovariance((covariances.var - covariances.cov1) / counts,
                                        shared * (counts[0] - 1) / counts[0], math.inf)
    else:  # = (Var - Cov2)(1/r_a + 1/r_b) + 2 max(Cov2 - Cov3, 0)
        fixed_readers = _MeanCovariance((covariances.var - covariances.cov2) / counts, shared, math.inf)
    if crossed or len(set(counts)) == 1:
        reader_part, df_by_modality = ms / counts, None  # one mean square for every modality
    else:
        reader_part, df_by_modality = reader_ms / counts, tuple(counts - 1)
    structures = {"random": _MeanCovariance(reader_part, shared, df_ms, df_by_modality),
                  "fixed_readers": fixed_readers,
                  "fixed_cases": _MeanCovariance(reader_part, 0.0, df_ms, df_by_modality)}
    single = {
        "random": [(reader_ms[i] + counts[i] * max(covariances.cov2_by_modality[i], 0.0)) / counts[i]
                   for i in range(len(means))],
        "fixed_readers": [(covariances.var_by_modality[i] + (counts[i] - 1) * max(covariances.cov2_by_modality[i], 0))
                          / counts[i] for i in range(len(means))],
        "fixed_cases": [reader_ms[i] / counts[i] for i in range(len(means))],
    }
    inference = {}
    for name in GENERALISATIONS:
        estimates = tuple(_single(study.modalities[i], means[i], single[name][i], reader_ms[i], counts[i], name, alpha)
                          for i in range(len(means)))
        inference[name] = structures[name].inference(study.modalities, means, estimates, alpha)
    return MRMCResult(fom, study.design, study.modalities, study.readers, study.n_cases, int(study.truth.sum()),
                      theta, covariances, case_classes, squares,
                      _components(study.design, squares, covariances, len(means)),
                      inference["random"], inference["fixed_readers"], inference["fixed_cases"], alpha,
                      _notes(study, covariances, inference["random"]),
                      reader_contrasts(study, theta, deleted, alpha) if crossed else ())


@dataclass(frozen=True)
class _MeanCovariance:
    """Cov(modality means) = diag(reader_part) + case_part * I (+ a constant that cancels in contrasts)."""

    reader_part: np.ndarray  # (t,)
    case_part: float
    df_reader: float  # df of the one mean square behind reader_part; inf = known variance
    df_by_modality: tuple[float, ...] | None = None  # instead: each modality's own mean square and df

    def ddf(self, weights: np.ndarray, case_weight: float) -> float | None:
        """ddf of the error term sum(weights * reader_part) + case_weight * case_part."""
        parts = weights * self.reader_part
        if self.df_by_modality is None:
            return satterthwaite(float(parts.sum()), case_weight * self.case_part, self.df_reader)
        denominator = sum(part ** 2 / df for part, df in zip(parts, self.df_by_modality, strict=True) if part > 0)
        if denominator == 0:
            return math.inf if self.case_part > 0 else None
        return (float(parts.sum()) + case_weight * self.case_part) ** 2 / denominator

    def inference(self, names, means: np.ndarray, estimates, alpha: float) -> Inference:
        t = len(means)
        contrast = np.hstack([np.eye(t - 1), -np.ones((t - 1, 1))])
        covariance = np.diag(self.reader_part) + self.case_part * np.eye(t)
        difference = contrast @ means
        inner = contrast @ covariance @ contrast.T
        try:
            wald = float(difference @ np.linalg.solve(inner, difference))
        except np.linalg.LinAlgError:
            wald = math.nan
        F = wald / (t - 1)
        ddf = self.ddf(np.full(t, 1 / t), 1.0)
        pairs = tuple(self._contrast(names, means, a, b, alpha) for a, b in combinations(range(t), 2))
        # two modalities: the global test is their contrast's (the generalised p-value when an arm is small)
        p_value = pairs[0].p_value if t == 2 else _f_p(F, t - 1, ddf)
        return Inference(F, t - 1, _finite(ddf), p_value, tuple(estimates), pairs)

    def few_readers(self, *modalities: int) -> bool:
        """Whether a contrast of these modalities rests on an arm too small for Satterthwaite's df."""
        return self.df_by_modality is not None and \
            min(self.df_by_modality[m] for m in modalities) + 1 < MIN_READERS_FOR_SATTERTHWAITE

    def _contrast(self, names, means, a: int, b: int, alpha: float) -> Contrast:
        estimate = float(means[a] - means[b])
        variance = float(self.reader_part[a] + self.reader_part[b] + 2 * self.case_part)
        se = math.sqrt(variance) if variance > 0 else math.nan
        weights = np.zeros(len(means))
        weights[[a, b]] = 1.0
        ddf = self.ddf(weights, 2.0)
        F = (estimate / se) ** 2 if se > 0 else math.nan
        if self.few_readers(a, b) and se > 0:
            p_value, low, high = generalised_test(estimate, (float(self.reader_part[a]), float(self.reader_part[b])),
                                                  (self.df_by_modality[a], self.df_by_modality[b]),
                                                  2 * self.case_part, alpha)
        else:
            quantile = _quantile(alpha, ddf)
            p_value, low, high = _f_p(F, 1, ddf), estimate - quantile * se, estimate + quantile * se
        # a difference of two FOMs on [0, 1] lies in [-1, 1]
        return Contrast(names[a], names[b], estimate, se, max(low, -1.0), min(high, 1.0), F, 1, _finite(ddf), p_value)


def satterthwaite(reader_part: float, case_part: float, df_reader: float) -> float | None:
    """Hillis's ddf for an error term reader_part + case_part whose case part is treated as known:
    (reader_part + case_part)^2 / (reader_part^2 / df_reader). None = a normal reference."""
    if math.isinf(df_reader):
        return None
    if reader_part <= 0:
        return math.inf if case_part > 0 else None
    return (reader_part + case_part) ** 2 / (reader_part ** 2 / df_reader)


def _single(name: str, mean: float, variance: float, reader_ms: float, readers: float, generalisation: str,
            alpha: float) -> Estimate:
    """One modality's FOM with its CI (Hillis 2007, single-treatment analyses)."""
    se = math.sqrt(variance) if variance > 0 else 0.0
    if generalisation == "fixed_readers":
        df = None
    elif generalisation == "fixed_cases":
        df = readers - 1
    else:
        df = satterthwaite(reader_ms / readers, variance - reader_ms / readers, readers - 1)
    quantile = _quantile(alpha, df)
    # a FOM (AUC, sensitivity, specificity) lies in [0, 1]: the part of a t interval beyond is impossible values
    return Estimate(name, float(mean), se, _finite(df), max(float(mean - quantile * se), 0.0),
                    min(float(mean + quantile * se), 1.0))


def _crossed_mean_squares(theta: np.ndarray) -> tuple[dict[str, float | None], float, float]:
    t, r = theta.shape
    grand, by_modality, by_reader = theta.mean(), theta.mean(axis=1), theta.mean(axis=0)
    interaction = theta - by_modality[:, None] - by_reader[None, :] + grand
    ms_t = r * float(((by_modality - grand) ** 2).sum()) / (t - 1)
    ms_r = t * float(((by_reader - grand) ** 2).sum()) / (r - 1)
    ms_tr = float((interaction ** 2).sum()) / ((t - 1) * (r - 1))
    return {"ms_t": ms_t, "ms_r": ms_r, "ms_tr": ms_tr, "ms_r_within_t": None}, ms_tr, float((t - 1) * (r - 1))


def _nested_mean_squares(theta: np.ndarray, counts: np.ndarray) -> tuple[dict[str, float | None], float, float]:
    means = np.nanmean(theta, axis=1)
    weighted = float((counts * means).sum() / counts.sum())
    ms_t = float((counts * (means - weighted) ** 2).sum()) / (len(means) - 1)
    df = float((counts - 1).sum())
    ms_within = float(np.nansum((theta - means[:, None]) ** 2)) / df
    return {"ms_t": ms_t, "ms_r": None, "ms_tr": None, "ms_r_within_t": ms_within}, ms_within, df


def _components(design: str, squares: dict, covariances: Covariances, t: int) -> dict[str, float | None]:
    """OR variance components (moment estimates; they can be negative)."""
    var, cov2, cov3 = covariances.var, covariances.cov2, covariances.cov3
    if design == "crossed":
        cov1 = covariances.cov1
        var_tr = squares["ms_tr"] - var + cov1 + cov2 - cov3
        return {"var_r": (squares["ms_r"] - var_tr - var - (t - 1) * cov1 + cov2 + (t - 1) * cov3) / t,
                "var_tr": var_tr}
    return {"var_r": squares["ms_r_within_t"] - var + cov2, "var_tr": None}


def _notes(study: ReaderStudy, covariances: Covariances, random: Inference) -> list[str]:
    notes = []
    if not math.isfinite(random.F):
        notes.append(_no_test_reason(study, covariances))
    if covariances.cov2 < covariances.cov3:
        notes.append("Cov2 < Cov3: the case term max(Cov2 - Cov3, 0) is 0, so readers alone carry the error term "
                     "(as in the OR method's constraints)")
    counts = study.reads.sum(axis=1)
    if study.design == "split-plot" and len(set(counts)) > 1:
        notes.append(f"unequal readers per modality ({', '.join(map(str, counts))}): each modality's reader mean "
                     "square is kept apart, with Satterthwaite degrees of freedom")
        if counts.min() < MIN_READERS_FOR_SATTERTHWAITE:
            notes.append(f"a modality has fewer than {MIN_READERS_FOR_SATTERTHWAITE} readers: the random-reader "
                         "contrasts use the generalised (Behrens-Fisher) p-value and interval, which stay valid "
                         "there but are conservative when the arms' readers vary alike; the ddf shown is "
                         "Satterthwaite's")
    return notes


def _no_test_reason(study: ReaderStudy, covariances: Covariances) -> str:
    """Why the global test has no F: its error term is zero."""
    if covariances.var == 0:
        return ("no test: deleting any case leaves every reader's figure of merit unchanged and the readers agree, "
                "so there is no case or reader variability to test against (constant scores, or perfect separation "
                "with an AUC of 1 in every reading); the estimates stand, but no p-value or interval can be given")
    return ("no test: the error term (reader-by-modality mean square plus case covariance) is zero, so the F "
            "statistic is undefined; the estimates stand, but no p-value can be given")


def _quantile(alpha: float, df: float | None) -> float:
    if df is None or math.isinf(df):
        return float(stats.norm.ppf(1 - alpha / 2))
    return float(stats.t.ppf(1 - alpha / 2, df))


def _f_p(F: float, ndf: int, ddf: float | None) -> float:
    if not math.isfinite(F):
        return math.nan
    if ddf is None or math.isinf(ddf):
        return float(stats.chi2.sf(F * ndf, ndf))
    return float(stats.f.sf(F, ndf, ddf))


def _finite(df: float | None) -> float | None:
    return None if df is None or math.isinf(df) else float(df)


def _contrast_json(contrast: Contrast) -> dict[str, Any]:
    return asdict(contrast)


def _inference_json(inference: Inference, fom: str) -> dict[str, Any]:
    return {"F": inference.F, "ndf": inference.ndf, "ddf": inference.ddf, "p_value": inference.p_value,
            "modalities": {e.name: {fom: e.value, "se": e.se, "df": e.df, "ci_low": e.ci_low, "ci_high": e.ci_high}
                           for e in inference.modalities},
            "contrasts": [_contrast_json(c) for c in inference.contrasts]}
