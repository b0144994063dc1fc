"""The report's figures, as PNG data URIs (the report stays one self-contained file).

Colours are the Okabe-Ito palette (colour-blind safe). Every arm axis label carries its n, and
metrics of one family share one y scale: rates on 0-1, Brier and ECE on one scale, times in seconds.
"""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from xai_lab.analysis.report_text import METRIC_NAMES, RATES, SCORES  # noqa: E402

COLOURS = {"verify": "#0072B2", "rely": "#D55E00", "control": "#009E73"}
OTHER_COLOUR = "#CC79A7"
CONDITION_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7")
MIN_BIN_TRIALS = 5


def colour(arm: str) -> str:
    return COLOURS.get(arm, OTHER_COLOUR)


def data_uri(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def arm_labels(arms: list[str], n: dict[str, int]) -> list[str]:
    return [f"{arm}\n(n={n.get(arm, 0)})" for arm in arms]


def metrics_figures(by_arm: dict, n: dict[str, int]) -> list[tuple[str, str]]:
    """(title, data URI) per metric family present: rates (0-1), scores, and the rest one by one."""
    arms = list(by_arm)
    present = [m for m in METRIC_NAMES if any(by_arm[a][m].value is not None for a in arms)]
    families = [("Rates (shared 0-1 scale)", [m for m in RATES if m in present], (0.0, 1.0)),
                ("Calibration scores (shared scale)", [m for m in SCORES if m in present], None)]
    families += [(METRIC_NAMES[m], [m], None) for m in present if m not in RATES + SCORES]
    figures = []
    for title, names, limits in families:
        if not names:
            continue
        figures.append((title, data_uri(_family(by_arm, arms, n, names, limits))))
    return figures


def _family(by_arm: dict, arms: list[str], n: dict[str, int], names: list[str], limits) -> plt.Figure:
    columns = min(3, len(names))
    rows = int(np.ceil(len(names) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.7 * columns, 2.8 * rows), squeeze=False)
    scale = 1000.0 if names == ["median_rt_final_ms"] else 1.0  # times in seconds
    highs = []
    for ax, name in zip(axes.flat, names, strict=False):
        for position, arm in enumerate(arms):
            estimate = by_arm[arm][name]
            if estimate.value is None:
                continue
            value = estimate.value / scale
            # a percentile-bootstrap interval need not contain the pooled ratio: bars from the interval's ends
            low = max(0.0, value - (estimate.ci_low / scale if estimate.ci_low is not None else value))
            high = max(0.0, (estimate.ci_high / scale if estimate.ci_high is not None else value) - value)
            highs.append(value + high)
            ax.errorbar([position], [value], yerr=[[low], [high]], fmt="o", color=colour(arm), capsize=4)
        ax.set_xticks(range(len(arms)), arm_labels(arms, n), fontsize=8)
        ax.set_xlim(-0.6, len(arms) - 0.4)
        ax.set_title(METRIC_NAMES[name], fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    # all-zero values (simulated answers take no time) get a 0-1 axis, not matplotlib's +-0.001
    upper = max(highs, default=0.0) * 1.1 or 1.0
    top = limits or (min(0.0, *[ax.get_ylim()[0] for ax in axes.flat[:len(names)]]), upper)
    for ax in list(axes.flat)[:len(names)]:
        ax.set_ylim(*top)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    figure.tight_layout()
    return figure


def quadrant_figure(quadrant: pd.DataFrame, arms: list[str], n: dict[str, int]) -> str:
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
        ax.set_title(f"{arm} (n={n.get(arm, 0)})")
    figure.tight_layout()
    return data_uri(figure)


def calibration_figure(bins: pd.DataFrame, n: dict[str, int]) -> str:
    """Points sized by their trials; bins with fewer than MIN_BIN_TRIALS grey and hollow."""
    figure, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.plot([0, 1], [0, 1], color="#777", linestyle="--", label="perfect calibration")
    largest = max(1, int(bins["trials"].max()))
    for arm, rows in bins.groupby("arm", sort=False):
        ax.plot(rows["mean_confidence"], rows["accuracy"], "-", color=colour(arm), alpha=0.6,
                label=f"{arm} (n={n.get(arm, 0)})")
        sizes = 20 + 180 * rows["trials"] / largest
        few = rows["trials"] < MIN_BIN_TRIALS
        ax.scatter(rows.loc[~few, "mean_confidence"], rows.loc[~few, "accuracy"], s=sizes[~few], color=colour(arm))
        ax.scatter(rows.loc[few, "mean_confidence"], rows.loc[few, "accuracy"], s=sizes[few], facecolors="none",
                   edgecolors="#999")
    ax.scatter([], [], facecolors="none", edgecolors="#999", label=f"bin with < {MIN_BIN_TRIALS} trials")
    ax.set_xlabel("stated confidence / 100")
    ax.set_ylabel("share of final decisions right")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return data_uri(figure)


def competence_figure(items, n_raters: dict[str, dict[str, int]]) -> str:
    figure, axes = plt.subplots(1, len(items), figsize=(3.8 * len(items), 3.4), squeeze=False)
    low_all = min(lo for item in items for lo, _ in item.mean_cis.values() if lo is not None) \
        if any(lo is not None for item in items for lo, _ in item.mean_cis.values()) else 1
    high_all = max(hi for item in items for _, hi in item.mean_cis.values() if hi is not None) \
        if any(hi is not None for item in items for _, hi in item.mean_cis.values()) else 7
    for ax, item in zip(axes[0], items, strict=True):
        arms = list(item.means)
        for position, (arm, mean) in enumerate(item.means.items()):
            low, high = item.mean_cis[arm]
            error = None if low is None else [[mean - low], [high - mean]]
            ax.errorbar([position], [mean], yerr=error, fmt="o", color=colour(arm), capsize=4)
        ax.set_xticks(range(len(arms)), arm_labels(arms, n_raters.get(item.label, {})), fontsize=8)
        ax.set_xlim(-0.6, len(arms) - 0.4)
        ax.set_ylim(low_all - 0.5, high_all + 0.5)  # one scale for every item
        ax.set_title(item.label, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return data_uri(figure)


def roc_figure(curves: dict, grid: np.ndarray) -> str:
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for index, (condition, (readers, averaged)) in enumerate(curves.items()):
        tint = CONDITION_COLOURS[index % len(CONDITION_COLOURS)]
        axes[0].add_collection(LineCollection([np.column_stack(curve) for curve in readers], colors=tint,
                                              alpha=0.25, linewidths=0.8))
        axes[0].plot([], [], color=tint, label=f"{condition} (n={len(readers)} readers)")
        axes[1].plot(grid, averaged, color=tint, lw=2, label=condition)
    for ax, title in zip(axes, ("Each reader's ROC curve", "Reader-averaged ROC curve (vertical average)"),
                         strict=True):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.6, ls=":")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.set_title(title, fontsize=10)
        ax.set_aspect("equal")
        ax.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    return data_uri(figure)


def interaction_figures(cells: pd.DataFrame, factors: list[tuple[str, list[str]]], metric: str) -> list[str]:
    """One interaction plot per pair of factors: the metric's rate over the first factor's levels, a line
    per level of the second (the mean over any other factor's conditions)."""
    figures = []
    for i, (first, first_levels) in enumerate(factors):
        for second, second_levels in factors[i + 1:]:
            figure, axis = plt.subplots(figsize=(4.6, 3.2))
            for index, level in enumerate(second_levels):
                rows = cells[cells[second] == level]
                means = [rows.loc[rows[first] == x, "rate"].mean() for x in first_levels]
                axis.plot(first_levels, means, marker="o", color=CONDITION_COLOURS[index % len(CONDITION_COLOURS)],
                          label=f"{second} = {level}")  # participants per condition: the table beside it
            axis.set_ylim(0, 1)
            axis.set_xlabel(first)
            axis.set_ylabel(METRIC_NAMES.get(metric, metric))
            axis.legend(frameon=False, fontsize=8)
            axis.set_title(f"{first} x {second}", fontsize=10)
            figures.append(data_uri(figure))
    return figures
