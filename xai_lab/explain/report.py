"""Write an `ExplanationReport` as CSV, markdown, HTML and JSON, and as model-card evidence."""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import Any

from xai_lab.explain.evaluation import METRICS, SELECTION_RULE, ExplanationReport, selection_ranks

LOWER_IS_BETTER = {"deletion_auc", "mprt_spearman", "mprt_ssim", "seconds_per_image"}


def write_report(report: ExplanationReport, out_dir: Path) -> dict[str, Path]:
    """explanations.csv / .md / .html / .json in `out_dir`; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {kind: out_dir / f"explanations.{kind}" for kind in ("csv", "md", "html", "json")}
    _write_csv(report, paths["csv"])
    paths["md"].write_text(markdown_table(report))
    paths["html"].write_text(_html(report))
    paths["json"].write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return paths


def card_evidence(report: ExplanationReport) -> dict[str, Any]:
    """The model card's `explanations` section: the chosen default and the numbers behind it."""
    return {"default_method": report.default_method, "selection_rule": SELECTION_RULE,
            "selection_mean_ranks": selection_ranks(report),
            "evaluated_on": {"dataset": report.dataset, "n_images": report.n_images,
                             "n_localisation": report.n_localisation, "seed": report.seed,
                             "repeat_model": report.repeat_model},
            "methods": {name: result.summary() for name, result in report.methods.items()},
            "notes": report.notes}


def _write_csv(report: ExplanationReport, path: Path) -> None:
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["method", *[f"{m}{suffix}" for m in METRICS for suffix in ("", "_ci_low", "_ci_high")],
                         "mprt_pass"])
        for name, result in report.methods.items():
            row: list[Any] = [name]
            for metric in METRICS:
                estimate = result.estimates.get(metric)
                row += [None, None, None] if estimate is None else [estimate.mean, estimate.ci_low, estimate.ci_high]
            writer.writerow([*row, result.mprt_pass])


def _cell(report: ExplanationReport, method: str, metric: str) -> str:
    estimate = report.methods[method].estimates.get(metric)
    if estimate is None or estimate.mean is None:
        return "n/a"
    if metric == "seconds_per_image":
        return f"{estimate.mean * 1000:.1f} ms"
    if estimate.ci_low is None:
        return f"{estimate.mean:.3f}"
    return f"{estimate.mean:.3f} [{estimate.ci_low:.3f}, {estimate.ci_high:.3f}]"


def _rows(report: ExplanationReport) -> tuple[list[str], list[list[str]]]:
    """Table rows; a metric measured for no method (e.g. marker_mass without markers) is left out."""
    metrics = [m for m in METRICS if any(_cell(report, name, m) != "n/a" for name in report.methods)]
    header = ["method", *metrics, "mprt_pass"]
    rows = []
    for name, result in report.methods.items():
        verdict = "n/a" if result.mprt_pass is None else ("pass" if result.mprt_pass else "FAIL")
        label = f"{name} (default)" if name == report.default_method else name
        rows.append([label, *[_cell(report, name, metric) for metric in metrics], verdict])
    return header, rows


def markdown_table(report: ExplanationReport) -> str:
    header, rows = _rows(report)
    lines = [f"# Saliency evaluation: model {report.model_name} on {report.dataset}", "",
             f"Mean [95% CI] over images. Lower is better for: {', '.join(sorted(LOWER_IS_BETTER))}.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", f"Default method for studies: **{report.default_method or 'none (no method passed)'}** "
              f"({SELECTION_RULE}). {_ranks_text(report)}", ""] + [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def _ranks_text(report: ExplanationReport) -> str:
    ranks = sorted(selection_ranks(report).items(), key=lambda item: item[1])
    return "Mean ranks: " + (", ".join(f"{name} {rank:.2f}" for name, rank in ranks) or "none") + "."


def _html(report: ExplanationReport) -> str:
    header, rows = _rows(report)
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in report.notes)
    title = html.escape(f"Saliency evaluation: model {report.model_name} on {report.dataset}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #999;padding:4px 6px;font-size:13px}"
            # a wide table scrolls inside its box rather than running off the page
            ".wide{overflow-x:auto}</style></head><body>"
            f"<h1>{title}</h1><p>Mean [95% CI] over images. Lower is better for: "
            f"{html.escape(', '.join(sorted(LOWER_IS_BETTER)))}.</p>"
            f"<div class='wide'><table><tr>{head}</tr>{body}</table></div>"
            f"<p>Default method for studies: <b>{html.escape(str(report.default_method))}</b> "
            f"({html.escape(SELECTION_RULE)}). {html.escape(_ranks_text(report))}</p><ul>{notes}</ul></body></html>\n")
