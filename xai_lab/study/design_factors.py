"""Reading a design's `[factors.NAME]` tables and the checks only a whole factor design allows
(`xai_lab.study.factors` says what factors mean; `design_file` reads the rest of the design)."""

from __future__ import annotations

from xai_lab.errors import ConfigError
from xai_lab.paths import check_name
from xai_lab.study.design import MAX_BLOCK_SIZE, StudyDesign
from xai_lab.study.design_fields import read_section
from xai_lab.study.design_toml import TomlTable, identifier, short
from xai_lab.study.factors import (
    FACTOR_KINDS,
    MAX_LEVELS,
    MAX_SOURCE_LABEL,
    WORKFLOWS,
    Factor,
    cells,
    level_problem,
    within_factors,
)


def read_factors(table: TomlTable | None) -> tuple[Factor, ...]:
    """`[factors.NAME]` tables in the order written (the export's and the report's order)."""
    if table is None:
        return ()
    names = list(table.raw)
    if not names:
        table.fail("", "is empty; declare a factor as [factors.NAME] with vary and levels (docs/studies.md)")
    factors = tuple(_factor(table, name) for name in names)
    table.done()
    for kind in FACTOR_KINDS:
        same = [f.name for f in factors if f.sets == kind]
        if len(same) > 1:
            table.fail(same[1], f"sets {kind} like factor {same[0]!r}; one factor per kind (cross their levels "
                                "in one factor instead)")
    return factors


def _factor(parent: TomlTable, name: str) -> Factor:
    table = parent.table(name)
    try:
        identifier(TomlTable({"name": name}, parent.source, parent.prefix), "name")
    except ConfigError:
        parent.fail(name, "is not a usable factor name: use 1-48 letters, digits, '_', '-' or '.'")
    sets = table.choice("sets", FACTOR_KINDS, default=name if name in FACTOR_KINDS else None)
    levels = tuple(table.strings("levels"))
    if not 2 <= len(levels) <= MAX_LEVELS or len(set(levels)) != len(levels):
        table.fail("levels", f"must list 2-{MAX_LEVELS} distinct levels, got {short(list(levels))}")
    for level in levels:
        if "+" in level or "@" in level or ":" in level:
            table.fail("levels", f"level {level!r} contains '+', '@' or ':'; name levels with letters, digits, '_'")
    looks = _level_table(table, "looks", levels, sets == "explanation")
    maps = _level_table(table, "maps", levels, sets == "explanation")
    labels = _level_table(table, "labels", levels, sets == "source")
    models = _level_table(table, "models", levels, sets == "advice_model")
    for level in levels if sets == "advice_model" else ():
        try:
            check_name(models.get(level, level), "model")
        except ConfigError as error:
            table.fail(f"models.{level}", f"{error}; name a model under $XAI_LAB_HOME/models")
    for level, label in labels.items():
        if len(label) > MAX_SOURCE_LABEL:
            table.fail(f"labels.{level}", f"is longer than {MAX_SOURCE_LABEL} characters; say who advises in a few "
                                          "words, e.g. \"a senior radiologist\"")
    factor = Factor(name=name, sets=sets, levels=levels, looks=looks, labels=labels, maps=maps, models=models,
                    **read_section(table, Factor))
    for level in levels:
        problem = level_problem(factor, level)
        if problem:
            table.fail("levels", f"lists {level!r}, which a {sets} factor cannot show: {problem}")
    if factor.schedule == "blocks" and factor.vary != "within":
        table.fail("schedule", "is for within factors; a between factor's participants read one level throughout")
    if sets == "workflow" and factor.vary == "within":
        table.fail("vary", "within is not offered for workflow factors yet; vary workflow between participants, or "
                           "use arms with allocation.kind = \"within\" (the crossover) without [factors]")
    table.done()
    return factor


def _level_table(factor: TomlTable, key: str, levels: tuple[str, ...], allowed: bool) -> dict[str, str]:
    table = factor.table(key, optional=True)
    if table is None:
        return {}
    if not allowed:
        kind = {"looks": "explanation", "maps": "explanation", "labels": "source", "models": "advice_model"}[key]
        factor.fail(key, f"is for {kind} factors only; remove it")
    values = {level: table.string(level) for level in levels if level in table.raw}
    table.done()
    return values


def factor_arms(top: TomlTable, factors: tuple[Factor, ...]) -> tuple[str, ...]:
    """A factor design's arms are its workflows: the workflow factor's levels, or the one `arms` names."""
    workflow = next((f for f in factors if f.sets == "workflow"), None)
    if workflow is not None:
        if "arms" in top.raw:
            top.fail("arms", f"is set by factor {workflow.name!r} (its levels are the workflows); remove arms")
        return workflow.levels
    if "arms" not in top.raw:
        top.fail("arms", "is missing: without a workflow factor, name the one workflow every trial uses, e.g. "
                         "arms = [\"verify\"]")
    arms = tuple(top.strings("arms"))
    if len(arms) != 1 or arms[0] not in WORKFLOWS:
        top.fail("arms", f"must name one workflow ({', '.join(WORKFLOWS)}) when the factors have no workflow "
                         f"factor; got {short(list(arms))} (to compare workflows, declare [factors.workflow])")
    return arms


def factor_checks(design: StudyDesign, top: TomlTable) -> None:
    """What only a whole factor design can say: enough cases for the within cells, no per-arm settings
    that a factor now decides."""
    if not design.has_trials:
        top.fail("cases.n", "is 0, so no trial shows a condition; give the trials the factors vary (cases.n > 0) "
                            "or remove [factors]")
    within = within_factors(design.factors)
    n_cells = len(cells(within))
    if within and design.cases.n < n_cells:
        top.fail("cases.n", f"({design.cases.n}) is fewer than the {n_cells} within-participant cells of "
                            f"{', '.join(f.name for f in within)}; give every cell at least one case (cases.n >= "
                            f"{n_cells}, best a multiple)")
    if design.allocation.kind != "between":
        top.fail("allocation.kind", "must stay \"between\" with [factors]: each factor's vary says what varies "
                                    "within participants")
    explanation = top.raw.get("explanation") or {}
    kinds = {f.sets: f.name for f in design.factors}
    for key, kind in (("look", "explanation"), ("overlay", "explanation"), ("confidence_display", "confidence")):
        if kind in kinds and key in explanation:
            top.fail(f"explanation.{key}", f"is decided by factor {kinds[kind]!r}; remove explanation.{key}")
    if design.peer_rating.assignment == "by_arm":
        top.fail("peer_rating.assignment", "by_arm is not offered with [factors] yet; use \"balanced\"")
    if len(design.orders) > MAX_BLOCK_SIZE:
        top.fail("factors", f"make {len(design.orders)} allocation units (between cells x within rotations), more "
                            f"than a block may hold ({MAX_BLOCK_SIZE}); use fewer levels")


def contrast_factor(table: TomlTable, factors: tuple[Factor, ...]) -> Factor | None:
    """The factor a factor design's contrast compares (analysis.factor); None for arm designs."""
    if not factors:
        if "factor" in table.raw:
            table.fail("factor", "names a factor, but the design declares no [factors]; remove it")
        return None
    name = table.string("factor") if "factor" in table.raw else None
    if name is None:
        table.fail("factor", f"is missing: name the factor whose levels the contrast compares "
                             f"({', '.join(f.name for f in factors)})")
    factor = next((f for f in factors if f.name == name), None)
    if factor is None:
        table.fail("factor", f"is {short(name)}, not a factor of the design; use one of "
                             f"{', '.join(f.name for f in factors)}")
    return factor
