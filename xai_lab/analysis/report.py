"""The self-contained HTML report: plots embedded as PNG data URIs, readable offline.

Colours are the Okabe-Ito palette (colour-blind safe) and every plot has a text table beside
it. Interpretations are generated from the numbers and say what the intervals allow: a
difference whose CI spans zero is "compatible with no difference", never "no effect".
"""

from __future__ import annotations

import base64
import html
import io
from datetime import UTC, datetime

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from xai_lab.analysis.analyze import Analysis, metrics_table  # noqa: E402
from xai_lab.analysis.reliance import ECE_BINS  # noqa: E402
from xai_lab.analysis.report_mrmc import mrmc_section  # noqa: E402

COLOURS = {"verify": "#0072B2", "rely": "#D55E00", "control": "#009E73"}
OTHER_COLOUR = "#CC79A7"
PLOTTED = {
    "accuracy_initial": "Accuracy, initial decision", "accuracy_final": "Accuracy, final decision",
    "ai_accuracy": "AI accuracy on the same cases", "accuracy_gain": "Accuracy gain (final - initial)",
    "agreement": "Agreement with the AI", "over_reliance": "Over-reliance P(final = AI | AI wrong)",
    "under_reliance": "Under-reliance P(final != AI | AI right)",
    "switch_fraction": "Switch fraction (initial != AI)", "rair": "RAIR", "rsr": "RSR",
    "brier": "Brier score (final confidence)", "ece": f"ECE ({ECE_BINS} bins)",
    "median_rt_final_ms": "Median decision time (ms)", "overlay_toggles": "Overlay toggles per trial",
}

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#1a1a1a;line-height:1.45}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .5em;
text-align:right}th{background:#f2f2f2}td.l,th.l{text-align:left}.scroll{overflow-x:auto}
.note{background:#fff7e0;border-left:4px solid #e0a800;padding:.4em .8em;margin:.4em 0}
.flow{display:flex;gap:1em;flex-wrap:wrap;align-items:flex-start}.box{border:2px solid #555;border-radius:6px;
padding:.5em .8em;min-width:9em;text-align:center}.arrow{font-size:1.6em;align-self:center}
img{max-width:100%}.interp li{margin:.3em 0}
"""


def render_report(analysis: Analysis) -> str:
    parts = [f"<h1>Verify vs rely: analysis report</h1><p>Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by "
             "xai-lab. 95% CIs: participant-clustered percentile bootstrap for metrics; model-based for "
             "contrasts. Pilot participants are excluded.</p>"]
    if analysis.notes:
        parts.append("<h2>Data notes</h2>" + "".join(f"<div class='note'>{_e(n)}</div>" for n in analysis.notes))
    parts.append(_interpretation(analysis))
    parts.append(_flow(analysis))
    if analysis.by_arm:
        parts += [_metrics_section(analysis), _quadrant_section(analysis), _calibration_section(analysis),
                  _models_section(analysis), mrmc_section(analysis.mrmc, _png, _table, _fmt, _p_words)]
    if analysis.competence:
        parts.append(_competence_section(analysis))
    body = "\n".join(parts)
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>xai-lab analysis report</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{STYLE}</style></head>"
            f"<body>{body}</body></html>\n")


def _e(text: object) -> str:
    return html.escape(str(text))


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return "< 0.0001" if value < 0.0001 else f"{value:.4f}"


def _p_words(value: float | None) -> str:
    text = _p(value)
    return text if text.startswith("<") or text == "n/a" else f"= {text}"


def _ci(low: float | None, high: float | None, digits: int = 3) -> str:
    return "n/a" if low is None or high is None else f"[{_fmt(low, digits)}, {_fmt(high, digits)}]"


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return f"<img alt='plot' src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"


def _table(frame: pd.DataFrame, left: int = 1) -> str:
    head = "".join(f"<th class='{'l' if i < left else ''}'>{_e(c)}</th>" for i, c in enumerate(frame.columns))
    rows = []
    for row in frame.itertuples(index=False):
        cells = [f"<td class='{'l' if i < left else ''}'>{_e(_cell(v, name))}</td>"
                 for i, (v, name) in enumerate(zip(row, frame.columns, strict=True))]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<div class='scroll'><table><tr>{head}</tr>{''.join(rows)}</table></div>"


def _cell(value: object, column: str = "") -> str:
    if column.startswith("p_") and isinstance(value, float | np.floating):
        return _p(float(value))
    if isinstance(value, float | np.floating):
        return _fmt(float(value))
    return "n/a" if value is None or value is pd.NA else str(value)


def _colour(arm: str) -> str:
    return COLOURS.get(arm, OTHER_COLOUR)


# ---------------------------------------------------------------- sections


def _flow(analysis: Analysis) -> str:
    flow = analysis.tables.flow
    if not flow:
        return "<h2>Participant flow</h2><p>No flow.json in the export: flow counts unavailable.</p>"
    arms = "".join(f"<div class='box'><b>{_e(arm)}</b><br>allocated {c.get('allocated', 0)}<br>completed "
                   f"{c.get('completed', 0)}<br>withdrawn {c.get('withdrawn', 0)}<br>in progress "
                   f"{c.get('in_progress', 0)}<br>analysed {analysis.n_participants.get(arm, 'n/a')}</div>"
                   for arm, c in flow.get("by_arm", {}).items())
    return ("<h2>Participant flow (CONSORT)</h2><div class='flow'>"
            f"<div class='box'>enrolled {flow.get('enrolled', 0)}</div><div class='arrow'>&rarr;</div>"
            f"<div class='box'>declined consent {flow.get('declined_consent', 0)}<br>not yet allocated "
            f"{flow.get('not_yet_allocated', 0)}</div><div class='arrow'>&rarr;</div>{arms}</div>"
            "<p>Analysed: participants with at least one answered trial (partial sessions included).</p>")


def _metrics_section(analysis: Analysis) -> str:
    table = metrics_table(analysis.by_arm)
    table["95% CI"] = [_ci(lo, hi) for lo, hi in zip(table["ci_low"], table["ci_high"], strict=True)]
    wide = table.pivot(index="metric", columns="arm", values="estimate")
    names = [m for m in PLOTTED if m in wide.index and wide.loc[m].notna().any()]
    columns = 3
    rows = int(np.ceil(len(names) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(11, 2.6 * rows), squeeze=False)
    arms = list(analysis.by_arm)
    for ax, name in zip(axes.flat, names, strict=False):
        for position, arm in enumerate(arms):
            estimate = analysis.by_arm[arm][name]
            if estimate.value is None:
                continue
            # A percentile-bootstrap interval of a ratio metric need not contain its pooled estimate
            # (the cluster resampling shifts the ratio): draw the bar from the interval's ends.
            low = max(0.0, estimate.value - (estimate.ci_low if estimate.ci_low is not None else estimate.value))
            high = max(0.0, (estimate.ci_high if estimate.ci_high is not None else estimate.value) - estimate.value)
            ax.errorbar([position], [estimate.value], yerr=[[low], [high]], fmt="o", color=_colour(arm), capsize=4)
        ax.set_xticks(range(len(arms)), arms)
        ax.set_xlim(-0.6, len(arms) - 0.4)
        ax.set_title(PLOTTED[name], fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    figure.tight_layout()
    shown = table.assign(cell=[f"{_fmt(v)} {ci}" if v is not None and pd.notna(v) else "n/a"
                               for v, ci in zip(table["estimate"], table["95% CI"], strict=True)])
    wide_cells = shown.pivot(index="metric", columns="arm", values="cell").reindex(index=list(PLOTTED),
                                                                                 columns=arms)
    wide_cells = wide_cells.dropna(how="all").reset_index()
    return ("<h2>Metrics by arm</h2><p>Each metric pools the trials where it applies; n/a where it does not "
            "apply (e.g. initial decisions outside verify, AI metrics in control). Dots are estimates, bars "
            "95% CIs; the table gives estimate [95% CI]; metrics_by_arm.csv adds the trial counts.</p>"
            + _png(figure) + _table(wide_cells))


def _quadrant_section(analysis: Analysis) -> str:
    quadrant = analysis.quadrant
    if quadrant is None or quadrant.empty:
        return "<h2>Reliance quadrant</h2><p>No trials with AI advice.</p>"
    arms = [a for a in analysis.by_arm if a in set(quadrant["arm"])]
    figure, axes = plt.subplots(1, len(arms), figsize=(3.6 * len(arms), 3.2), squeeze=False)
    for ax, arm in zip(axes[0], arms, strict=True):
        cells = quadrant[quadrant["arm"] == arm].set_index(["ai", "final"])
        grid = np.zeros((2, 2))
        for i, ai in enumerate(("AI right", "AI wrong")):
            for j, final in enumerate(("final right", "final wrong")):
                grid[i, j] = cells["share_within_ai"].get((ai, final), 0.0)
                count = int(cells["trials"].get((ai, final), 0))
                ax.text(j, i, f"{grid[i, j]:.0%}\n({count})", ha="center", va="center",
                        color="black" if grid[i, j] > 0.5 else "white")  # viridis is light at the top
        ax.imshow(grid, cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks([0, 1], ["final right", "final wrong"])
        ax.set_yticks([0, 1], ["AI right", "AI wrong"])
        ax.set_title(arm)
    figure.tight_layout()
    return ("<h2>Reliance quadrant</h2><p>Share of trials within each row (AI right / AI wrong), with counts. "
            "'AI wrong, final wrong' is where advice misled; 'AI wrong, final right' is an AI error caught.</p>"
            + _png(figure) + _table(quadrant, left=3))


def _calibration_section(analysis: Analysis) -> str:
    bins = analysis.calibration
    if bins is None or bins.empty:
        return ""
    figure, ax = plt.subplots(figsize=(5, 4.4))
    ax.plot([0, 1], [0, 1], color="#777", linestyle="--", label="perfect calibration")
    for arm, rows in bins.groupby("arm", sort=False):
        ax.plot(rows["mean_confidence"], rows["accuracy"], "o-", color=_colour(arm), label=arm)
    ax.set_xlabel("stated confidence / 100")
    ax.set_ylabel("share of final decisions right")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return (f"<h2>Confidence calibration</h2><p>Final confidence / 100 read as the probability that the final "
            f"decision is right; {ECE_BINS} equal-width bins [0, 0.1), ..., [0.9, 1.0]; a point per non-empty "
            "bin. Brier and ECE by arm are in the metrics table.</p>" + _png(figure) + _table(bins, left=1))


def _models_section(analysis: Analysis) -> str:
    models = analysis.trial_models
    if models is None:
        return ""
    parts = ["<h2>Trial-level models</h2><p>Which models ran and why:</p><ul>"]
    parts += [f"<li>{_e(note)}</li>" for note in models.notes]
    parts.append("</ul><p>GEE is the inferential model: population-averaged effects with robust SEs, clustered "
                 "by participant (statsmodels has no frequentist GLMM with crossed effects). The Bayesian mixed "
                 "GLM adds crossed participant and case random intercepts as a check.</p>")
    if not models.contrasts.empty:
        contrasts = models.contrasts.assign(
            **{"odds ratio [95% CI]": [f"{_fmt(o, 2)} {_ci(lo, hi, 2)}" for o, lo, hi in
                                       zip(models.contrasts["odds_ratio"], models.contrasts["ci_low"],
                                           models.contrasts["ci_high"], strict=True)]})
        parts.append("<h3>Planned arm contrasts (GEE, Holm within outcome)</h3>"
                     + _table(contrasts[["outcome", "ai", "a", "b", "odds ratio [95% CI]", "p_value", "p_holm"]],
                              left=4))
    if not models.coefficients.empty:
        parts.append("<h3>Coefficients (log-odds)</h3>" + _table(models.coefficients, left=3))
    return "".join(parts)


def _competence_section(analysis: Analysis) -> str:
    items = analysis.competence
    figure, axes = plt.subplots(1, len(items), figsize=(3.8 * len(items), 3.4), squeeze=False)
    for ax, item in zip(axes[0], items, strict=True):
        for position, (arm, mean) in enumerate(item.means.items()):
            low, high = item.mean_cis[arm]
            error = None if low is None else [[mean - low], [high - mean]]
            ax.errorbar([position], [mean], yerr=error, fmt="o", color=_colour(arm), capsize=4)
        ax.set_xticks(range(len(item.means)), list(item.means))
        ax.set_xlim(-0.6, len(item.means) - 0.4)
        ax.set_title(item.item, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    parts = ["<h2>Peer-rated competence</h2><p>Mean rating by how the rated clinician used AI (target_arm), with "
             f"95% CIs from the model. Primary item: <b>{_e(analysis.primary_item)}</b>.</p>", _png(figure)]
    for item in items:
        parts.append(f"<h3>{_e(item.item)}</h3><p>Model: <b>{_e(item.model)}</b>, because {_e(item.why)}. "
                     f"{item.n_ratings} ratings from {item.n_raters} raters.</p>")
        if item.effect_size:
            es = item.effect_size
            parts.append(f"<p>F({es['df_effect']}, {es['df_error']}) = {_fmt(es['F'], 2)}, p "
                         f"{_p_words(es['p_value'])}; partial eta squared = {_fmt(es['partial_eta_squared'])} "
                         f"{_ci(es['ci_low'], es['ci_high'])}.</p>")
        means = pd.DataFrame([{"target_arm": arm, "mean": m, "95% CI": _ci(*item.mean_cis[arm], digits=2)}
                              for arm, m in item.means.items()])
        parts.append(_table(means))
        if item.contrasts:
            frame = pd.DataFrame(item.contrasts)
            frame["95% CI"] = [_ci(lo, hi, 2) for lo, hi in zip(frame["ci_low"], frame["ci_high"], strict=True)]
            keep = [c for c in ("a", "b", "estimate", "95% CI", "p_value", "p_holm", "cohens_d") if c in frame]
            parts.append(_table(frame[keep], left=2))
        parts += [f"<div class='note'>{_e(n)}</div>" for n in item.notes]
    return "".join(parts)


# ---------------------------------------------------------------- interpretation


def _interpretation(analysis: Analysis) -> str:
    lines = []
    by_arm = analysis.by_arm
    if "verify" in by_arm and "rely" in by_arm:
        lines.append(_compare(analysis, "over_reliance", "over-reliance (following wrong advice)", "agree",
                              "AI wrong"))
        lines.append(_compare(analysis, "under_reliance", "under-reliance (rejecting right advice)", "agree",
                              "AI right", invert=True))
        lines.append(_compare(analysis, "accuracy_final", "final accuracy", "correct", "AI right"))
        lines.append(_compare(analysis, "accuracy_final", "final accuracy", "correct", "AI wrong"))
    verify = by_arm.get("verify", {})
    if verify and verify["rair"].value is not None:
        lines.append(f"In verify, readers who were wrong at first took right advice in {_fmt(verify['rair'].value, 2)} "
                     f"{_ci(verify['rair'].ci_low, verify['rair'].ci_high, 2)} of such trials (RAIR) and kept their "
                     f"right answer against wrong advice in {_fmt(verify['rsr'].value, 2)} "
                     f"{_ci(verify['rsr'].ci_low, verify['rsr'].ci_high, 2)} (RSR).")
    item = next((i for i in analysis.competence if i.item == analysis.primary_item), None)
    if item is not None:
        for contrast in item.contrasts:
            lines.append(_competence_sentence(item.item, contrast))
    if not lines:
        return ""
    return ("<h2>What the data say</h2><ul class='interp'>" + "".join(f"<li>{_e(line)}</li>" for line in lines if line)
            + "</ul><p>Intervals are 95%; p-values are two-sided. A CI that includes zero (or an odds ratio of 1) "
            "means the data are compatible with no difference, not that there is none.</p>")


def _compare(analysis: Analysis, metric: str, words: str, outcome: str, ai: str, invert: bool = False) -> str:
    """Both arms' bootstrap estimates, then the GEE odds ratio verify/rely on trials where the AI was `ai`."""
    verify, rely = analysis.by_arm["verify"][metric], analysis.by_arm["rely"][metric]
    if verify.value is None or rely.value is None:
        return f"{words.capitalize()} could not be compared: no applicable trials in one arm."
    text = (f"{words.capitalize()}: rely {_fmt(rely.value, 2)} {_ci(rely.ci_low, rely.ci_high, 2)} vs verify "
            f"{_fmt(verify.value, 2)} {_ci(verify.ci_low, verify.ci_high, 2)}.")
    if metric == "accuracy_final":  # the arms' overall accuracy, then the model's contrast on one kind of case
        text = f"{words.capitalize()} overall: rely {_fmt(rely.value, 2)} vs verify {_fmt(verify.value, 2)}."
    contrasts = analysis.trial_models.contrasts if analysis.trial_models else pd.DataFrame()
    if contrasts.empty:
        return text
    rows = contrasts[(contrasts["outcome"] == outcome) & (contrasts["a"] == "verify") & (contrasts["b"] == "rely")
                     & (contrasts["ai"] == ai)]
    if rows.empty:
        return text
    row = rows.iloc[0]
    odds, low, high = row["odds_ratio"], row["ci_low"], row["ci_high"]
    if not np.isfinite([odds, low, high]).all():
        return text + f" On {ai} cases the odds ratio is not estimable (every answer in a cell was the same)."
    if invert:  # under-reliance is disagreement: invert the agreement odds ratio
        odds, low, high = 1 / odds, 1 / high, 1 / low
    verdict = ("compatible with no difference" if low <= 1 <= high else
               "lower in verify" if high < 1 else "higher in verify")
    return (text + f" On {ai} cases, odds ratio verify/rely {_fmt(odds, 2)} {_ci(low, high, 2)} (GEE, Holm p "
            f"{_p_words(row['p_holm'])}): {verdict}.")


def _competence_sentence(item: str, contrast: dict) -> str:
    low, high = contrast["ci_low"], contrast["ci_high"]
    if low is None or high is None or not np.isfinite([low, high]).all():
        return ""
    verdict = ("compatible with no difference" if low <= 0 <= high else
               f"{contrast['a']} rated higher" if low > 0 else f"{contrast['b']} rated higher")
    return (f"Peer-rated {item}: {contrast['a']} - {contrast['b']} = {_fmt(contrast['estimate'], 2)} "
            f"{_ci(low, high, 2)} points (Holm p {_p_words(contrast['p_holm'])}): {verdict}.")
