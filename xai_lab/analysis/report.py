"""The self-contained HTML report, rendered from `templates/report.html.j2` by Jinja2 with autoescape.

Everything shown is computed here as plain text (numbers formatted, sentences written by
`report_text`) and escaped by the template, so a value such as a flow.json key `<script>` renders
as text. Plots are PNG data URIs (`report_plots`): the file opens offline. The report opens with
the declared primary estimand; everything after it is secondary or descriptive.
"""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape

from xai_lab.analysis.factorial import factors_of
from xai_lab.analysis.reliance import ECE_BINS
from xai_lab.analysis.report_mrmc import ai_context, mrmc_context
from xai_lab.analysis.report_plots import (
    MIN_BIN_TRIALS,
    calibration_figure,
    competence_figure,
    interaction_figures,
    metrics_figures,
    quadrant_figure,
)
from xai_lab.analysis.report_text import (
    METRIC_NAMES,
    PLAIN,
    ci,
    competence_sentence,
    fmt,
    metric_value,
    odds_ratio_sentence,
    p_text,
    p_words,
    risk_difference_sentence,
    table,
)
from xai_lab.analysis.results import Analysis
from xai_lab.analysis.risk_difference import RiskDifference

TEMPLATES = Path(__file__).resolve().parent / "templates"
_ENVIRONMENT = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]),
                           trim_blocks=True, lstrip_blocks=True)
SOFTWARE = ("xai-lab", "numpy", "pandas", "scipy", "statsmodels", "scikit-learn", "matplotlib", "jinja2")


def render_report(analysis: Analysis) -> str:
    n = analysis.n_participants
    context = {
        "study": (analysis.tables.design or {}).get("id", ""),
        "generated": f"{datetime.now(UTC):%Y-%m-%d %H:%M}", "versions": _versions(),
        "resamples": analysis.settings.get("resamples", "n/a"), "headline": analysis.headline_warnings,
        "missing": analysis.tables.missing, "preregistration": analysis.preregistration,
        "primary": _primary(analysis), "secondary": _secondary(analysis),
        "notes": _unique(analysis.notes), "interpretation": _interpretation(analysis),
        "flow": _flow(analysis), "crossover": _crossover(analysis),
        "metrics": _metrics(analysis, n) if analysis.by_arm else None,
        "differences": _differences(analysis), "quadrant": _quadrant(analysis, n),
        "factorial": _factorial(analysis),
        "calibration": _calibration(analysis, n), "models": _models(analysis),
        "mrmc": mrmc_context(analysis.mrmc), "mrmc_ai": ai_context(analysis.mrmc),
        "competence": _competence(analysis),
        "methods": _methods(analysis),
    }
    return _ENVIRONMENT.get_template("report.html.j2").render(**context)


def _unique(lines: list[str]) -> list[str]:
    return list(dict.fromkeys(line for line in lines if line))


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# ---------------------------------------------------------------- the estimand


def _rd_value(rd: RiskDifference) -> str:
    if rd.estimate is None:
        return "not estimable"
    return f"{fmt(rd.estimate)} {ci(rd.ci_low, rd.ci_high)}, p {p_words(rd.p_value)}"


def _primary(analysis: Analysis) -> dict | None:
    estimands = analysis.estimands
    if estimands is None or estimands.primary is None:
        return None
    rd, declared = estimands.primary, estimands.declared
    return {
        "declared": ("Declared in the design ([analysis])" if declared.declared else
                     "Not declared in the design: the analysis's default estimand (declare one in [analysis])"),
        "title": f"{METRIC_NAMES.get(rd.metric, rd.metric)}: {rd.a} - {rd.b}, risk difference on the probability "
                 "scale",
        "value": _rd_value(rd), "sentence": risk_difference_sentence(rd),
        "method": rd.method + (f"; {rd.note}" if rd.note else "") + (
            f"; t on {fmt(rd.df, 1)} df (Satterthwaite)" if rd.df and "crossed" in rd.method else ""),
        "warnings": estimands.warnings, "population": estimands.population,
        # without a participants file there is no subset to compare with: no table (the population says so)
        "sensitivity": table(pd.DataFrame([
            {"population": name, "estimate [95% CI]": _rd_value(r if r is not None else rd),
             f"n {rd.a}": (r or rd).n_a, f"n {rd.b}": (r or rd).n_b}
            for name, r in estimands.sensitivity])) if len(estimands.sensitivity) > 1 else None,
        "needed": estimands.needed_note,
    }


def _rd_rows(results: list[RiskDifference], holm: bool) -> pd.DataFrame:
    rows = [{"metric": METRIC_NAMES.get(r.metric, r.metric), "contrast": f"{r.a} - {r.b}",
             "risk difference": fmt(r.estimate), "95% CI": ci(r.ci_low, r.ci_high), "p": p_text(r.p_value),
             **({"p (Holm)": p_text(r.p_holm)} if holm else {}), "n (a, b)": f"{r.n_a}, {r.n_b}",
             "cases": r.n_cases} for r in results]
    return pd.DataFrame(rows)


def _secondary(analysis: Analysis) -> dict | None:
    estimands = analysis.estimands
    return table(_rd_rows(estimands.secondary, holm=True), left=2) if estimands and estimands.secondary else None


def _differences(analysis: Analysis) -> dict | None:
    estimands = analysis.estimands
    return table(_rd_rows(estimands.differences, holm=False), left=2) if estimands and estimands.differences \
        else None


def _factorial(analysis: Analysis) -> dict | None:
    """Factorial designs: the interactions of the primary metric and its rate per condition."""
    estimands = analysis.estimands
    if estimands is None or estimands.cells is None:
        return None
    cells = estimands.cells.rename(columns=lambda c: c.removeprefix("factor_"))
    factors = [(f.name, list(f.levels)) for f in factors_of(analysis.tables.design or {})]
    shown = cells.assign(**{c: cells[c].map(fmt) for c in cells.columns if c in ("rate", "rair", "rsr")})
    return {"metric": METRIC_NAMES.get(estimands.declared.primary, estimands.declared.primary),
            "interactions": table(_rd_rows(estimands.interactions, holm=False), left=2)
            if estimands.interactions else None,
            "figures": interaction_figures(cells, factors, estimands.declared.primary),
            "cells": table(shown, left=len(factors))}


def _crossover(analysis: Analysis) -> dict | None:
    estimands = analysis.estimands
    if estimands is None or not estimands.crossover:
        return None
    effects, flow, notes = [], [], []
    for metric, result in estimands.crossover.items():
        for effect in (result.arm_effect, result.period_effect, result.carryover):
            effects.append({"metric": METRIC_NAMES.get(metric, metric), "effect": effect.name,
                            "estimate": fmt(effect.estimate), "95% CI": ci(effect.ci_low, effect.ci_high),
                            "p": p_text(effect.p_value), "df": fmt(effect.df, 1),
                            "participants with both periods": result.n_paired})
        flow += [{"metric": METRIC_NAMES.get(metric, metric), **row} for row in result.flow]
        notes += result.notes
    return {"effects": table(pd.DataFrame(effects), left=2), "flow": table(pd.DataFrame(flow), left=2),
            "notes": _unique(notes)}


# ---------------------------------------------------------------- descriptive sections


def _interpretation(analysis: Analysis) -> list[str]:
    lines = []
    estimands = analysis.estimands
    if estimands is not None:
        lines += [risk_difference_sentence(r) for r in estimands.secondary]
    contrasts = analysis.trial_models.contrasts if analysis.trial_models else pd.DataFrame()
    if not contrasts.empty and estimands is not None:
        a, b = estimands.declared.a, estimands.declared.b
        for outcome, ai, invert in (("agree", "AI wrong", False), ("agree", "AI right", True)):
            rows = contrasts[(contrasts["outcome"] == outcome) & (contrasts["ai"] == ai)
                             & (((contrasts["a"] == a) & (contrasts["b"] == b))
                                | ((contrasts["a"] == b) & (contrasts["b"] == a)))]
            if not rows.empty:
                lines.append(odds_ratio_sentence(rows.iloc[0], ai, invert))
    verify = analysis.by_arm.get("verify", {})
    if verify and verify["rair"].value is not None:
        lines.append(f"In verify, readers who were wrong at first took right advice in {fmt(verify['rair'].value, 2)} "
                     f"{ci(verify['rair'].ci_low, verify['rair'].ci_high, 2)} of such trials (RAIR) and kept their "
                     f"right answer against wrong advice in {fmt(verify['rsr'].value, 2)} "
                     f"{ci(verify['rsr'].ci_low, verify['rsr'].ci_high, 2)} (RSR).")
    item = next((i for i in analysis.competence if i.item == analysis.primary_item), None)
    if item is not None:
        lines += [competence_sentence(item.label, c) for c in item.contrasts]
    return _unique(lines)


def _flow(analysis: Analysis) -> dict | None:
    flow = analysis.tables.flow
    if not flow:
        return None
    opened = [f"opened a study link {flow.get('enrolled', 0)}"]
    decided = [f"left before consent {flow.get('opened_not_consented', 'n/a')}",
               f"declined consent {flow.get('declined_consent', 0)}",
               f"consented {flow.get('consented', 'n/a')}", f"not yet allocated {flow.get('not_yet_allocated', 0)}"]
    arms = [{"name": arm, "lines": [f"allocated {c.get('allocated', 0)}", f"completed {c.get('completed', 0)}",
                                    f"withdrawn {c.get('withdrawn', 0)}"
                                    + (f" (erased on request {c['erased']})" if c.get("erased") else ""),
                                    f"in progress {c.get('in_progress', 0)}",
                                    f"analysed {analysis.n_participants.get(arm, 'n/a')}"]}
            for arm, c in (flow.get("by_arm") or {}).items()]
    return {"boxes": [opened, decided], "arms": arms}


def _metrics(analysis: Analysis, n: dict[str, int]) -> dict:
    arms = list(analysis.by_arm)
    cells = {(m, arm): _metric_cell(m, analysis.by_arm[arm][m]) for arm in arms for m in METRIC_NAMES}
    rows = [{"metric": METRIC_NAMES[m], **{f"{arm} (n={n.get(arm, 0)})": cells[(m, arm)] for arm in arms}}
            for m in METRIC_NAMES if any(cells[(m, arm)] != "n/a" for arm in arms)]
    return {"figures": metrics_figures(analysis.by_arm, n), "table": table(pd.DataFrame(rows))}


def _metric_cell(name: str, estimate) -> str:
    """estimate [95% CI]; times in seconds with one decimal."""
    if estimate.value is None:
        return "n/a"
    if name == "median_rt_final_ms":
        seconds = [None if v is None else v / 1000 for v in (estimate.ci_low, estimate.ci_high)]
        return f"{metric_value(name, estimate.value)} {ci(*seconds, digits=1)}"
    return f"{fmt(estimate.value)} {ci(estimate.ci_low, estimate.ci_high)}"


def _quadrant(analysis: Analysis, n: dict[str, int]) -> dict | None:
    quadrant = analysis.quadrant
    if quadrant is None or quadrant.empty:
        return None
    arms = [a for a in analysis.by_arm if a in set(quadrant["arm"])]
    return {"figure": quadrant_figure(quadrant, arms, n), "table": table(_with_n(quadrant, n), left=3)}


def _with_n(frame: pd.DataFrame, n: dict[str, int]) -> pd.DataFrame:
    """The arm column as "arm (n=participants)"."""
    return frame.assign(arm=[f"{arm} (n={n.get(arm, 0)})" for arm in frame["arm"]])


def _calibration(analysis: Analysis, n: dict[str, int]) -> dict | None:
    bins = analysis.calibration
    if bins is None or bins.empty:
        return None
    shown = bins.assign(note=np.where(bins["trials"] < MIN_BIN_TRIALS, "too few to read", ""))
    return {"figure": calibration_figure(bins, n), "table": table(_with_n(shown, n)), "bins": ECE_BINS,
            "min_trials": MIN_BIN_TRIALS}


def _models(analysis: Analysis) -> dict | None:
    models, n = analysis.trial_models, analysis.n_participants
    if models is None:
        return None
    contrasts = None
    if not models.contrasts.empty:
        frame = models.contrasts.assign(**{"odds ratio [95% CI]": [
            f"{fmt(o, 2)} {ci(lo, hi, 2)}" for o, lo, hi in
            zip(models.contrasts["odds_ratio"], models.contrasts["ci_low"], models.contrasts["ci_high"], strict=True)]})
        frame["n (a, b)"] = [f"{n.get(a, 0)}, {n.get(b, 0)}" for a, b in zip(frame["a"], frame["b"], strict=True)]
        contrasts = table(frame[["outcome", "ai", "a", "b", "n (a, b)", "odds ratio [95% CI]", "df", "p_value",
                                 "p_holm"]], left=4)
    coefficients = table(models.coefficients, left=3) if not models.coefficients.empty else None
    return {"notes": models.notes, "contrasts": contrasts, "coefficients": coefficients}


def _competence(analysis: Analysis) -> dict | None:
    items = analysis.competence
    if not items:
        return None
    ratings = analysis.tables.ratings
    raters = {item.label: _raters_by_arm(ratings, item) for item in items} if ratings is not None else {}
    shown = []
    for item in items:
        model = f"Model: {item.model}, because {item.why}. {item.n_ratings} ratings from {item.n_raters} raters."
        if item.model.startswith("linear mixed"):
            model += " Tests are Wald z-tests (statsmodels MixedLM has no small-sample df): with few raters they are "
            model += "optimistic."
        effect = None
        if item.effect_size:
            es = item.effect_size
            effect = (f"F({es['df_effect']}, {es['df_error']}) = {fmt(es['F'], 2)}, p {p_words(es['p_value'])}; "
                      f"partial eta squared = {fmt(es['partial_eta_squared'])} {ci(es['ci_low'], es['ci_high'])}.")
        means = pd.DataFrame([{"target_arm": arm, "n raters": raters.get(item.label, {}).get(arm, "n/a"),
                               "mean": fmt(m, 2), "95% CI": ci(*item.mean_cis[arm], digits=2)}
                              for arm, m in item.means.items()])
        contrasts = None
        if item.contrasts:
            frame = pd.DataFrame(item.contrasts)
            frame["95% CI"] = [ci(lo, hi, 2) for lo, hi in zip(frame["ci_low"], frame["ci_high"], strict=True)]
            keep = [c for c in ("a", "b", "estimate", "95% CI", "p_value", "p_holm", "cohens_d") if c in frame]
            contrasts = table(frame[keep], left=2)
        shown.append({"name": item.label, "model": model, "effect": effect, "means": table(means),
                      "contrasts": contrasts, "notes": item.notes})
    return {"primary": analysis.primary_item, "figure": competence_figure(items, raters), "items": shown}


def _raters_by_arm(ratings: pd.DataFrame, item) -> dict[str, int]:
    rows = ratings[ratings["item"] == item.item]
    if item.kind and "target_kind" in rows:
        rows = rows[rows["target_kind"].astype(str) == item.kind]
    return rows.groupby("target_arm")["rater_id"].nunique().to_dict()


def _methods(analysis: Analysis) -> str:
    settings = analysis.settings
    parts = [f"Per-arm metrics pool the trials where each applies, with 95% percentile intervals from "
             f"{settings.get('resamples', 'n/a')} participant-clustered bootstrap resamples (seed "
             f"{settings.get('seed', 'n/a')})."]
    estimands = analysis.estimands
    if estimands is not None and estimands.primary is not None:
        parts.append(f"The primary estimand ({PLAIN.get(estimands.declared.primary, estimands.declared.primary)}, "
                     f"{estimands.declared.a} - {estimands.declared.b}) and every between-arm risk difference use "
                     f"{estimands.primary.method}: a method-of-moments decomposition of the participant x case table "
                     "with Satterthwaite degrees of freedom (between designs), or the period-adjusted paired analysis "
                     "with participants and cases random by the same decomposition (crossover designs). Secondary "
                     "estimands are Holm-adjusted.")
    parts.append("Trial-level GEE models (binomial, exchangeable, bias-reduced Mancl-DeRouen sandwich, t on "
                 "participants - parameters df) are a secondary check"
                 + (", with a Bayesian mixed GLM (crossed participant and case intercepts)" if settings.get("mixed")
                    else "") + ".")
    if analysis.mrmc is not None and (analysis.mrmc.sequential or analysis.mrmc.between_arms):
        parts.append("Reader-study ROC AUCs are compared by the Obuchowski-Rockette method with Hillis's ddf "
                     "(jackknife covariances).")
    advice = ((analysis.tables.design or {}).get("cases") or {}).get("advice", "model")
    if advice.startswith("imported:"):
        parts.append(f"The AI's advice and maps were a vendor's (advice set {advice.removeprefix('imported:')!r}, "
                     "imported with its outputs, not run by xai-lab); no randomisation check of the maps was possible, "
                     "because the model behind them was not available.")
    if analysis.competence:
        parts.append("Peer-rated competence: one-way ANOVA with Welch contrasts (one rating per rater) or a linear "
                     "mixed model (several per rater), Holm within each item; ratings of vignettes and of peers' "
                     "records are analysed apart.")
    return " ".join(parts)
