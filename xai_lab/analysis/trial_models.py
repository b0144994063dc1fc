"""Trial-level models: correctness and agreement with the AI by arm x AI correctness.

Two statsmodels models, chosen because statsmodels has no frequentist GLMM with crossed
random effects:
- **GEE** (binomial, logit, exchangeable working correlation, clustered by participant):
  population-averaged odds ratios with robust (sandwich) standard errors that stay valid if the
  working correlation is wrong. Its Wald tests give the p-values of the planned contrasts, Holm-
  corrected within each outcome. Every participant reads the same cases, so case difficulty is
  balanced across arms and does not bias the arm contrast.
- **Bayesian mixed GLM** (`BinomialBayesMixedGLM`, variational Bayes) with crossed participant
  and case random intercepts: the model the design implies, reported beside GEE for the
  correctness outcome as a check that case heterogeneity does not change the conclusions
  (posterior means and SDs; no p-values). It costs ~15 s on 20,000 trials, so it runs for
  correctness only.

AI correctness is a property of the case: control trials show no AI, so they take it from the
same case read in the AI arms, which lets control serve as the unaided baseline.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
import statsmodels.api as sm
from patsy import build_design_matrices, dmatrices
from scipy import sparse, stats
from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

from xai_lab.analysis.comparison import holm, ordered_arms

# |log odds ratio| CI bounds beyond this (an odds ratio past 1e8) mean separation, not an estimate
SEPARATION_LOG_ODDS = 18.0


@dataclass
class TrialModels:
    coefficients: pd.DataFrame  # outcome, model, term, estimate, ci_low, ci_high, p_value
    contrasts: pd.DataFrame  # outcome, ai, a, b, log_odds_ratio, odds_ratio, ci_low, ci_high, p_value, p_holm
    notes: list[str]


def model_frame(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials (as `load.clean_trials` returns them) with case-level AI correctness (also for control),
    correctness and agreement as 0/1."""
    has_ai = trials["ai_right"].notna()
    case_wrong = (~trials.loc[has_ai, "ai_right"].astype(bool)).groupby(trials.loc[has_ai, "case_id"]).mean()
    frame = pd.DataFrame({
        "participant_id": trials["participant_id"].astype(str), "case_id": trials["case_id"].astype(str),
        "arm": trials["arm"].astype(str), "correct": trials["final_right"].astype(int),
        "agree": trials["agrees"].fillna(False).astype(int), "has_ai": has_ai,
        "ai_wrong": trials["case_id"].map(case_wrong),
    })
    ambiguous = frame["ai_wrong"].notna() & ~frame["ai_wrong"].isin([0.0, 1.0])
    frame.loc[ambiguous, "ai_wrong"] = np.nan  # a case whose advice differed between participants
    return frame.dropna(subset=["ai_wrong"]).astype({"ai_wrong": int})


def fit_trial_models(trials: pd.DataFrame, mixed: bool = True) -> TrialModels:
    frame = model_frame(trials)
    coefficients, contrasts, notes = [], [], []
    outcomes = {"correct": frame, "agree": frame[frame["has_ai"]]}
    for outcome, data in outcomes.items():
        reason = _unfit_reason(data, outcome)
        if reason:
            notes.append(f"{outcome}: not modelled ({reason})")
            continue
        result, formula = _gee(data, outcome)
        with warnings.catch_warnings():
            # separation makes a robust variance negative: its SE is NaN and the contrast "not estimable"
            warnings.simplefilter("ignore", RuntimeWarning)
            coefficients.append(_coefficient_table(result, outcome, "GEE"))
            contrasts.append(_contrasts(result, data, outcome))
        notes.append(f"{outcome}: GEE `{formula}`, binomial logit, exchangeable within participant, bias-reduced "
                     f"(Mancl-DeRouen) robust SEs with t on {result.small_sample_df} df (participants - parameters); "
                     f"{len(data)} trials, {data['participant_id'].nunique()} participants")
        if mixed and outcome == "correct":
            table, note = _mixed_glm(data, outcome)
            notes.append(note)
            if table is not None:
                coefficients.append(table)
    return TrialModels(pd.concat(coefficients, ignore_index=True) if coefficients else pd.DataFrame(),
                       pd.concat(contrasts, ignore_index=True) if contrasts else pd.DataFrame(), notes)


def _unfit_reason(data: pd.DataFrame, outcome: str) -> str | None:
    if data["arm"].nunique() < 2:
        return "needs trials in at least two arms"
    if data[outcome].nunique() < 2:
        return f"every trial has {outcome} = {data[outcome].iloc[0] if len(data) else 'nothing'}; nothing to model"
    if data["participant_id"].nunique() < 4:
        return "fewer than 4 participants"
    return None


def _formula(data: pd.DataFrame, outcome: str) -> str:
    arms = ordered_arms(data["arm"])
    arm = f"C(arm, Treatment('{'control' if 'control' in arms else arms[0]}'))"  # control: the unaided baseline
    return f"{outcome} ~ {arm} * ai_wrong" if data["ai_wrong"].nunique() > 1 else f"{outcome} ~ {arm}"


def _gee(data: pd.DataFrame, outcome: str):
    formula = _formula(data, outcome)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence and perfect-prediction warnings become notes via the CIs
        endog, exog = dmatrices(formula, data, return_type="dataframe")
        result = sm.GEE(endog, exog, groups=data["participant_id"].to_numpy(), family=sm.families.Binomial(),
                        cov_struct=sm.cov_struct.Exchangeable()).fit(cov_type="bias_reduced")
    result.design_info = exog.design_info  # patsy's, to build contrast rows for arm cells
    # small samples: t reference on clusters - parameters df (Mancl & DeRouen 2001 with the bias-reduced sandwich)
    result.small_sample_df = max(1, data["participant_id"].nunique() - exog.shape[1])
    return result, formula


def _coefficient_table(result, outcome: str, model: str) -> pd.DataFrame:
    df = result.small_sample_df
    se = result.bse.to_numpy()
    quantile = stats.t.ppf(0.975, df)
    estimate = result.params.to_numpy()
    return pd.DataFrame({"outcome": outcome, "model": model, "term": [readable_term(t) for t in result.params.index],
                         "estimate": estimate, "ci_low": estimate - quantile * se, "ci_high": estimate + quantile * se,
                         "p_value": 2 * stats.t.sf(np.abs(estimate / se), df), "df": df})


def readable_term(term: str) -> str:
    """patsy's `C(arm, Treatment('control'))[T.rely]:ai_wrong` as `rely vs control x AI wrong`."""
    if term == "Intercept":
        return "intercept (reference arm, AI right)"
    parts = []
    for piece in term.split(":"):
        if piece.startswith("C(arm"):
            reference = piece.split("Treatment('")[1].split("')")[0] if "Treatment('" in piece else "reference"
            parts.append(f"{piece.split('[T.')[1].rstrip(']')} vs {reference}")
        else:
            parts.append("AI wrong" if piece == "ai_wrong" else piece)
    return " x ".join(parts)


def _contrasts(result, data: pd.DataFrame, outcome: str) -> pd.DataFrame:
    """Pairwise arm contrasts (log odds ratios) at each level of AI correctness, Holm across all."""
    arms = ordered_arms(data["arm"])
    levels = sorted(data["ai_wrong"].unique())
    design_info = result.design_info
    grid = pd.DataFrame([(arm, level) for level in levels for arm in arms], columns=["arm", "ai_wrong"])
    matrix = np.asarray(build_design_matrices([design_info], grid)[0])
    rows = []
    for ai_wrong in levels:
        cells = {arm: matrix[k] for k, (arm, level) in enumerate(grid.itertuples(index=False)) if level == ai_wrong}
        for a, b in combinations(arms, 2):
            vector = cells[a] - cells[b]
            estimate = float(vector @ result.params.to_numpy())
            variance = float(vector @ result.cov_params().to_numpy() @ vector)
            se = np.sqrt(variance) if variance > 0 else np.nan
            df = result.small_sample_df
            low, high = estimate - stats.t.ppf(0.975, df) * se, estimate + stats.t.ppf(0.975, df) * se
            row = {"outcome": outcome, "ai": "AI wrong" if ai_wrong else "AI right", "a": a, "b": b,
                   "log_odds_ratio": estimate, "odds_ratio": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                   "p_value": np.nan, "df": df}
            # a cell where every answer is the same (separation) drives the log odds ratio off to +/- inf
            if np.isfinite([low, high]).all() and max(abs(low), abs(high)) < SEPARATION_LOG_ODDS:
                row.update(odds_ratio=float(np.exp(estimate)), ci_low=float(np.exp(low)),
                           ci_high=float(np.exp(high)), p_value=float(2 * stats.t.sf(abs(estimate / se), df)))
            rows.append(row)
    table = pd.DataFrame(rows)
    table["p_holm"] = holm(table["p_value"])
    return table


def _mixed_glm(data: pd.DataFrame, outcome: str) -> tuple[pd.DataFrame | None, str]:
    """Crossed participant and case random intercepts; design matrices built sparse (patsy's dense
    dummies for 500 participants cost more than the fit)."""
    formula = _formula(data, outcome)
    endog, exog = dmatrices(formula, data, return_type="dataframe")
    participant, case = pd.Categorical(data["participant_id"]), pd.Categorical(data["case_id"])
    rows = np.arange(len(data))
    z = sparse.hstack([sparse.csr_matrix((np.ones(len(data)), (rows, codes)), shape=(len(data), len(levels)))
                       for codes, levels in ((participant.codes, participant.categories),
                                             (case.codes, case.categories))]).tocsr()
    ident = np.r_[np.zeros(len(participant.categories), int), np.ones(len(case.categories), int)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = BinomialBayesMixedGLM(endog.to_numpy().ravel(), exog, z, ident, vcp_p=1.0, fe_p=2.0).fit_vb()
    except (np.linalg.LinAlgError, ValueError) as error:
        return None, f"{outcome}: Bayesian mixed GLM did not fit ({error})"
    sd = result.fe_sd
    table = pd.DataFrame({"outcome": outcome, "model": "Bayesian mixed GLM",
                          "term": [readable_term(t) for t in exog.columns],
                          "estimate": result.fe_mean, "ci_low": result.fe_mean - 1.96 * sd,
                          "ci_high": result.fe_mean + 1.96 * sd, "p_value": np.nan})
    sds = np.exp(result.vcp_mean)
    note = (f"{outcome}: Bayesian mixed GLM `{formula}` + (1 | participant) + (1 | case), variational Bayes; "
            f"random-intercept SDs (logit scale): participant {sds[0]:.2f}, case {sds[1]:.2f}; "
            "intervals are posterior mean +/- 1.96 SD")
    return table, note
