"""The design's [analysis] section: the primary estimand (a metric and a contrast of two arms or of two
levels of a factor, or the interaction of two factors), the secondary metrics and the effect the study is
sized for. A reader of its own because a contrast is checked against the arms and factors read before it.
"""

from __future__ import annotations

from dataclasses import replace

from xai_lab.study.design import AI_METRICS, RATE_METRICS, AnalysisSpec
from xai_lab.study.design_factors import contrast_factor
from xai_lab.study.design_fields import read_setting
from xai_lab.study.design_toml import TomlTable, short
from xai_lab.study.factors import Factor


def read_analysis(table: TomlTable | None, arms: tuple[str, ...], factors: tuple[Factor, ...] = ()) -> AnalysisSpec:
    if table is None:
        return AnalysisSpec()
    hidden = read_setting(table, AnalysisSpec, "max_hidden_share")
    if set(table.raw) == {"max_hidden_share"}:  # only the telemetry threshold: the default estimand
        table.done()
        return AnalysisSpec(max_hidden_share=hidden)
    return replace(_estimand(table, arms, factors), max_hidden_share=hidden)


def _estimand(table: TomlTable, arms: tuple[str, ...], factors: tuple[Factor, ...]) -> AnalysisSpec:
    primary = read_setting(table, AnalysisSpec, "primary", default=None)  # required in a present table
    if "interaction" in table.raw:
        return _interaction(table, primary, factors)
    factor = contrast_factor(table, factors)
    text = table.string("contrast")
    parts = [part.strip() for part in text.split(" - ")]
    levels = factor.levels if factor else arms
    if len(parts) != 2 or parts[0] == parts[1] or not all(part in levels for part in parts):
        other = next((f.name for f in factors for part in parts if factor and f is not factor and part in f.levels),
                     None)
        if other:
            table.fail("contrast", f"names a level of factor {other!r}, not of {factor.name!r}: a contrast compares "
                                   f"two levels of analysis.factor ({', '.join(levels)}); for another factor, set "
                                   "analysis.factor to it")
        what = f"levels of factor {factor.name!r}" if factor else "of the design's arms"
        table.fail("contrast", f"must name two {what} ({', '.join(levels)}) as \"a - b\", e.g. "
                               f"\"{levels[-1] if len(levels) > 1 else 'rely'} - {levels[0]}\"; got {short(text)}")
    workflow_contrast = factor is None or factor.sets == "workflow"
    if primary in AI_METRICS and "control" in parts and workflow_contrast:
        table.fail("contrast", f"compares control, which sees no AI, on {primary}; contrast two AI arms or choose "
                               "accuracy_final")
    secondary = tuple(table.strings("secondary", default=[]))
    for name in secondary:
        if name not in RATE_METRICS or name == primary:
            table.fail("secondary", f"lists {name!r}; use other metrics from {', '.join(RATE_METRICS)}")
    effect = table.raw_value("effect", None, "a number")
    spec = AnalysisSpec(primary=primary, contrast=tuple(parts), secondary=secondary,
                        effect=None if effect is None else table.number("effect", low=-1.0, high=1.0),
                        factor=factor.name if factor else "")
    if spec.effect == 0:
        table.fail("effect", "must be a non-zero risk difference (the one the study is sized to detect)")
    table.done()
    return spec


def _interaction(table: TomlTable, primary: str, factors: tuple[Factor, ...]) -> AnalysisSpec:
    """[analysis] interaction = "A x B": the primary estimand is the interaction of two declared factors."""
    text = table.string("interaction")
    names = tuple(part.strip() for part in text.split(" x "))
    known = [f.name for f in factors]
    if not factors:
        table.fail("interaction", "needs [factors]: an interaction is between two declared factors")
    if len(names) != 2 or names[0] == names[1] or not all(name in known for name in names):
        missing = next((name for name in names if name not in known), None)
        table.fail("interaction", (f"names {missing!r}, which is not a factor of the design; " if missing else "")
                   + f"write two of {', '.join(known)} as \"A x B\", e.g. \"{known[0]} x {known[-1]}\"; "
                   f"got {short(text)}")
    for key in ("contrast", "factor", "effect"):
        if key in table.raw:
            table.fail(key, "cannot be set with interaction: the interaction is the primary estimand; remove one")
    secondary = tuple(table.strings("secondary", default=[]))
    for name in secondary:
        if name not in RATE_METRICS or name == primary:
            table.fail("secondary", f"lists {name!r}; use other metrics from {', '.join(RATE_METRICS)}")
    table.done()
    return AnalysisSpec(primary=primary, secondary=secondary, interaction=names)
