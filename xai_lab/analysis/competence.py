"""Peer-rated competence by how the rated clinician used AI (`target_arm`), per rating item.

Which model runs depends on the design, and the report says which and why:
- each rater gives one rating (the Yang/Dai design): **one-way ANOVA** (F test, partial eta
  squared with a 95% CI by noncentral F inversion, Steiger 2004) with planned pairwise contrasts
  as Welch t-tests and Cohen's d: on a bounded 1-7 scale an arm near the top varies less, and a
  pooled variance would make the other arms' intervals too narrow (seen in the recovery test);
- raters rate several targets: **linear mixed model** `score ~ target_arm + (1 | rater)`
  (statsmodels MixedLM, REML), with `+ (1 | target)` crossed when targets are rated by more
  than one rater, because then a rated clinician's own impression is shared by their ratings.
Contrasts are Holm-corrected within an item. Means are the model's cell means with 95% CIs.

Ratings of vignettes and ratings of peers' records (`target_kind`) are analysed apart: they are
different stimuli (a written description of how a clinician used AI vs a colleague's real trial),
and a design that rates peer records shows vignettes only as a fallback while too few records
exist, so pooling them by `target_arm` invented groups the design never had (a "control" group
of one fallback rating in a verify-vs-rely study).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from itertools import combinations

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import optimize, stats
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from xai_lab.analysis.comparison import holm, ordered_arms

# statsmodels fits crossed effects as one group with dense variance blocks: ~0.3 s per likelihood
# evaluation at 1,000 levels (30 s a fit). Above this many rater + target levels the crossed
# term is dropped and a two-way cluster-robust check is reported instead.
MAX_CROSSED_LEVELS = 400

# Pairs as (a, b), estimate = mean(a) - mean(b): the Yang/Dai ordering makes all three positive.
PAIR_ORDER = ("control", "verify", "rely")


@dataclass
class ItemResult:
    item: str
    model: str
    why: str
    n_raters: int
    n_ratings: int
    means: dict[str, float]
    mean_cis: dict[str, tuple[float | None, float | None]]
    contrasts: list[dict] = field(default_factory=list)
    effect_size: dict | None = None  # partial eta squared with its CI (ANOVA only)
    notes: list[str] = field(default_factory=list)
    kind: str = ""  # what was rated: "peer_record" or "vignette" ("" for exports without target_kind)

    @property
    def label(self) -> str:
        return f"{self.item} ({KIND_NAMES.get(self.kind, self.kind)})" if self.kind else self.item

    def to_json(self) -> dict:
        return {"item": self.item, "rating_kind": self.kind or None, "model": self.model, "why": self.why,
                "n_raters": self.n_raters, "n_ratings": self.n_ratings, "means": self.means,
                "mean_ci": {arm: list(ci) for arm, ci in self.mean_cis.items()},
                "contrasts": self.contrasts, "effect_size": self.effect_size, "notes": self.notes}


KIND_NAMES = {"peer_record": "peer records", "vignette": "vignettes"}


def analyze_competence(ratings: pd.DataFrame, first_kind: str | None = None) -> list[ItemResult]:
    """Each item, apart for each kind of rated target; the design's own kind (`first_kind`) first."""
    if "target_kind" not in ratings.columns:
        return [analyze_item(item, frame.reset_index(drop=True)) for item, frame in ratings.groupby("item", sort=True)]
    kinds = ratings["target_kind"].astype("string").fillna("unknown")
    results = [replace(analyze_item(item, frame.reset_index(drop=True)), kind=str(kind))
               for (kind, item), frame in ratings.groupby([kinds, "item"], sort=True)]
    return sorted(results, key=lambda r: (r.kind != first_kind, r.kind, r.item))


def analyze_item(item: str, frame: pd.DataFrame) -> ItemResult:
    arms = ordered_arms(frame["target_arm"], PAIR_ORDER)
    per_rater = frame.groupby("rater_id").size()
    raw_means = {arm: float(frame.loc[frame["target_arm"] == arm, "score"].mean()) for arm in arms}
    base = dict(item=item, n_raters=int(per_rater.size), n_ratings=len(frame), means=raw_means,
                mean_cis={arm: (None, None) for arm in arms})
    if len(arms) < 2:
        return ItemResult(model="none", why=f"only one target arm ({arms[0]}) was rated: nothing to compare",
                          **base)
    if frame["score"].nunique() == 1:
        return ItemResult(model="none", why=f"every score is {frame['score'].iloc[0]:g}: no variance to model",
                          **base)
    if per_rater.size < 2:
        return ItemResult(model="none", why="a single rater: no between-rater replication to model", **base)
    if per_rater.max() == 1:
        return _anova(item, frame, arms, base)
    return _mixed(item, frame, arms, base, int(per_rater.max()))


def known_intervals(cis: dict[str, tuple[float, float]]) -> dict[str, tuple[float | None, float | None]]:
    """Intervals with a non-finite bound (a standard error of NaN from a covariance that is not
    positive definite) become unknown (None, None), which every table and figure already shows."""
    return {arm: (low, high) if np.isfinite([low, high]).all() else (None, None) for arm, (low, high) in cis.items()}


def _pairs(arms: list[str]) -> list[tuple[str, str]]:
    return list(combinations(arms, 2))


def _anova(item: str, frame: pd.DataFrame, arms: list[str], base: dict) -> ItemResult:
    counts = frame.groupby("target_arm").size()
    if counts.min() < 2:
        base["why"] = "an arm has fewer than 2 ratings: no within-arm variance"
        return ItemResult(model="none", **base)
    table = anova_lm(smf.ols("score ~ C(target_arm)", data=frame).fit(), typ=2)
    ss_effect, ss_error = table.loc["C(target_arm)", "sum_sq"], table.loc["Residual", "sum_sq"]
    df_effect, df_error = table.loc["C(target_arm)", "df"], table.loc["Residual", "df"]
    eta = float(ss_effect / (ss_effect + ss_error)) if ss_effect + ss_error > 0 else 0.0
    f_value = float(table.loc["C(target_arm)", "F"])
    scores = {arm: DescrStatsW(frame.loc[frame["target_arm"] == arm, "score"].to_numpy(float)) for arm in arms}
    means = {arm: float(d.mean) for arm, d in scores.items()}
    cis = {arm: tuple(float(v) for v in d.tconfint_mean()) for arm, d in scores.items()}
    contrasts = [_welch_contrast(scores, a, b) for a, b in _pairs(arms)]
    _holm(contrasts)
    low, high = partial_eta_squared_ci(f_value, df_effect, df_error)
    base.update(means=means, mean_cis=known_intervals(cis))
    return ItemResult(model="one-way ANOVA", contrasts=contrasts,
                      why="each rater rated one target (the Yang/Dai between-rater design), so ratings are "
                          "independent; means and contrasts use each arm's own variance (Welch), because a "
                          "bounded scale makes arms near its ends vary less",
                      effect_size={"partial_eta_squared": eta, "ci_low": low, "ci_high": high,
                                   "F": f_value, "df_effect": int(df_effect), "df_error": int(df_error),
                                   "p_value": float(table.loc["C(target_arm)", "PR(>F)"])}, **base)


def _welch_contrast(scores: dict[str, DescrStatsW], a: str, b: str) -> dict:
    compare = CompareMeans(scores[a], scores[b])
    _, p_value, _ = compare.ttest_ind(usevar="unequal")
    low, high = compare.tconfint_diff(usevar="unequal")
    estimate = float(scores[a].mean - scores[b].mean)
    n_a, n_b = scores[a].nobs, scores[b].nobs
    # DescrStatsW.var divides by n (CompareMeans expects that); d uses the sample variances
    pooled_sd = float(np.sqrt((scores[a].var * n_a / (n_a - 1) + scores[b].var * n_b / (n_b - 1)) / 2))
    d = estimate / pooled_sd if pooled_sd > 0 else None
    se_d = None if d is None else float(np.sqrt((n_a + n_b) / (n_a * n_b) + d ** 2 / (2 * (n_a + n_b))))
    return {"a": a, "b": b, "estimate": estimate, "ci_low": float(low), "ci_high": float(high),
            "p_value": float(p_value), "p_holm": None, "model": "one-way ANOVA, planned contrast (Welch t)",
            "cohens_d": d, "d_ci_low": None if d is None else d - 1.96 * se_d,
            "d_ci_high": None if d is None else d + 1.96 * se_d}


def _mixed(item: str, frame: pd.DataFrame, arms: list[str], base: dict, most_per_rater: int) -> ItemResult:
    raters_per_target = frame.groupby("target_id")["rater_id"].nunique()
    shared = bool(raters_per_target.max() > 1 and frame["target_id"].nunique() > len(arms))
    levels = frame["target_id"].nunique() + frame["rater_id"].nunique()
    crossed = shared and levels <= MAX_CROSSED_LEVELS
    data = frame.assign(one=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # boundary fits (a zero variance) are reported, not fatal
        if crossed:
            model = smf.mixedlm("score ~ C(target_arm) - 1", data, groups="one",
                                vc_formula={"rater": "0 + C(rater_id)", "target": "0 + C(target_id)"})
        else:
            model = smf.mixedlm("score ~ C(target_arm) - 1", data, groups="rater_id")
        try:
            fit = model.fit(reml=True)
        except (np.linalg.LinAlgError, ValueError) as error:
            base["why"] = f"the mixed model did not fit ({error})"
            return ItemResult(model="none", **base)
    name = "linear mixed model: score ~ target_arm + (1 | rater)" + (" + (1 | target)" if crossed else "")
    means, cis = _cell_means(fit, arms)
    contrasts = [_contrast(fit, a, b, name) for a, b in _pairs(arms)]
    _holm(contrasts)
    notes = [] if fit.converged else ["the mixed model reported non-convergence; treat its CIs with caution"]
    if shared and not crossed:
        notes.append(_two_way_clustered_check(frame, arms, levels))
    why = (f"raters rated several targets (up to {most_per_rater}), so their "
           "ratings share the rater's leniency" + ("; targets were rated by several raters, so a target "
                                                   "effect is crossed with the rater effect" if crossed else ""))
    cis = known_intervals(cis)
    if any(low is None for low, _ in cis.values()):
        notes.append("a cell mean's interval could not be computed (the mixed model's covariance is not positive "
                     "definite): it is shown without one")
    base.update(means=means, mean_cis=cis)
    return ItemResult(model=name, why=why, contrasts=contrasts, notes=notes, **base)


def _two_way_clustered_check(frame: pd.DataFrame, arms: list[str], levels: int) -> str:
    """OLS with standard errors clustered by rater and by target (two-way): valid under crossed
    dependence without estimating it, and fast; its CIs bound how much dropping (1 | target) matters."""
    groups = np.column_stack([pd.Categorical(frame["rater_id"]).codes, pd.Categorical(frame["target_id"]).codes])
    fit = smf.ols("score ~ C(target_arm) - 1", frame).fit(cov_type="cluster", cov_kwds={"groups": groups})
    checks = [_contrast(fit, a, b, "") for a, b in _pairs(arms)]
    text = "; ".join(f"{c['a']} - {c['b']} {c['estimate']:.2f} [{c['ci_low']:.2f}, {c['ci_high']:.2f}]"
                     for c in checks)
    return (f"targets were rated by several raters, but {levels} rater + target levels are too many for "
            f"statsmodels' crossed model (limit {MAX_CROSSED_LEVELS}), so (1 | target) was dropped; OLS with "
            f"two-way (rater, target) cluster-robust SEs gives {text}")


def _term(arm: str) -> str:
    """The cell-mean coefficient of an arm in `score ~ C(target_arm) - 1`."""
    return f"C(target_arm)[{arm}]"


def _cell_means(fit, arms: list[str]) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    ci = fit.conf_int()
    means = {arm: float(fit.params[_term(arm)]) for arm in arms}
    cis = {arm: (float(ci.loc[_term(arm), 0]), float(ci.loc[_term(arm), 1])) for arm in arms}
    return means, cis


def _contrast(fit, a: str, b: str, model: str) -> dict:
    index = list(getattr(fit, "fe_params", fit.params).index)  # MixedLM tests fixed effects only
    vector = np.zeros(len(index))
    vector[index.index(_term(a))], vector[index.index(_term(b))] = 1.0, -1.0
    test = fit.t_test(vector[None, :])
    low, high = test.conf_int()[0]
    return {"a": a, "b": b, "estimate": float(test.effect[0]), "ci_low": float(low), "ci_high": float(high),
            "p_value": float(test.pvalue), "p_holm": None, "model": model}


def _holm(contrasts: list[dict]) -> None:
    for contrast, adjusted in zip(contrasts, holm(c["p_value"] for c in contrasts), strict=True):
        contrast["p_holm"] = float(adjusted) if np.isfinite(adjusted) else None


def partial_eta_squared_ci(f_value: float, df1: float, df2: float, level: float = 0.95) -> tuple[float, float]:
    """CI for partial eta squared by inverting the noncentral F distribution (Steiger 2004)."""
    if not np.isfinite(f_value):
        return float("nan"), float("nan")
    tail = (1 - level) / 2

    def noncentrality(target: float) -> float:
        # the lambda for which P(F <= f_value | lambda) = target; 0 when even lambda = 0 is below it
        if stats.f.cdf(f_value, df1, df2) < target:
            return 0.0
        upper = max(10.0, f_value * df1 * 10)
        while stats.ncf.cdf(f_value, df1, df2, upper) > target:
            upper *= 2
        return optimize.brentq(lambda nc: stats.ncf.cdf(f_value, df1, df2, nc) - target, 0.0, upper)

    n_total = df1 + df2 + 1
    low, high = noncentrality(1 - tail), noncentrality(tail)
    return float(low / (low + n_total)), float(high / (high + n_total))
