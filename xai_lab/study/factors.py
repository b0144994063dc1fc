"""Conditions as factors: what a participant sees and does on a trial, declared as crossed factors.

A design's `[factors.NAME]` tables each name what their levels set (`sets`), whether the factor varies
`between` participants or `within` them (over cases), and the levels. A trial's condition is one level
of every factor, resolved here into what the screen shows (`Condition`).

Schedules (docs/studies.md, "Conditions as factors"):
- between factors: the cells (one level of each between factor) are allocation units of the existing
  concealed, stratified permuted blocks;
- within factors: their cells are rotated over the case set. A participant with rotation r reads case
  j of the study's case set under within cell (j + r) mod L (L within cells), so each participant sees
  each cell on n/L (+-1) cases; the rotation is part of the allocation unit, so the same permuted blocks
  that balance the between cells also give every rotation equally often, and so every case appears under
  every level equally often across participants (a Latin square over cases, completed at every block).
  `interleaved` keeps the participant's shuffled case order; `blocks` reads the cells one after the
  other (their order rotated by r), each block's cases in shuffled order.

The allocation unit is written `verify+contour@1`: the between levels in declared order (`all` with no
between factor) and, with within factors, `@` and the rotation. It is fixed at allocation and stored on
the participant, so resume and a rebuild from events give the same plan.

Designs written before factors (`arms = [...]`) are one between factor over the arms and never pass here:
their trials keep the per-arm presentation they were registered with (`legacy_condition`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from xai_lab.explain.looks import OVERLAY_LOOKS
from xai_lab.study.design_fields import setting

FACTOR_KINDS = ("workflow", "explanation", "source", "confidence", "advice_model")
WORKFLOWS = ("verify", "rely", "control", "on_demand")
CONFIDENCE_DISPLAYS = ("percent", "verbal", "none")
NO_MAP = "none"
# Whose map an explanation level shows: the advising model's own, one from a copy of that model with every
# parameter re-initialised (plausible-looking but unfaithful: it fails the randomisation check by
# construction), or another prepared model's map of the same case ("model:NAME").
OWN_MAP = "model"
RANDOMISED_MAP = "randomised"
OTHER_MODEL_MAP = "model:"
DEFAULT_SOURCE = "AI"
ALL_CELLS = "all"  # the between part of a unit when no factor varies between participants
ROTATION_MARK = "@"
LEVEL_JOIN = "+"
MAX_LEVELS = 8
MAX_SOURCE_LABEL = 80


@dataclass(frozen=True)
class Factor:
    name: str  # the table's name, [factors.NAME]: the export's `factor_<name>` column
    sets: str = setting(custom=True, choices=FACTOR_KINDS,
                        help="what its levels change: `workflow`, `explanation`, `source` (the advice's label) or "
                             "`confidence` (its display); may be left out when NAME is one of these")
    vary: str = setting(choices=("between", "within"),
                        help="`between`: one level per participant; `within`: every level, over the cases")
    levels: tuple[str, ...] = setting(custom=True, help=f"2-{MAX_LEVELS} level names (workflow: verify, rely, "
                                                        "control, on_demand; confidence: percent, verbal, none)")
    schedule: str = setting("interleaved", choices=("interleaved", "blocks"),
                            help="within factors: levels mixed over the reading (`interleaved`) or read in "
                                 "`blocks`, their order counterbalanced")
    looks: dict[str, str] = setting({}, custom=True,
                                    help="`[factors.NAME.looks]`, explanation factors: the look of each level "
                                         "(`none`, `contour`, `side_by_side`, `heatmap`); default: the level's name")
    labels: dict[str, str] = setting({}, custom=True,
                                     help="`[factors.NAME.labels]`, source factors: what the screen says the advice "
                                          "comes from, per level; default: the level's name")
    maps: dict[str, str] = setting({}, custom=True,
                                   help="`[factors.NAME.maps]`, explanation factors: whose map each level shows: "
                                        "`model` (the advising model's own), `randomised` (a parameter-randomised "
                                        "copy's), `model:NAME` (another prepared model's); default `model`")
    models: dict[str, str] = setting({}, custom=True,
                                     help="`[factors.NAME.models]`, advice_model factors: the prepared model that "
                                          "advises at each level; default: the level's name")

    def look(self, level: str) -> str | None:
        """The map's look at `level` of an explanation factor; None shows no map."""
        look = self.looks.get(level, level)
        return None if look == NO_MAP else look

    def label(self, level: str) -> str:
        return self.labels.get(level, level)

    def map_source(self, level: str) -> str:
        return self.maps.get(level, OWN_MAP)

    def model(self, level: str) -> str:
        return self.models.get(level, level)


@dataclass(frozen=True)
class Condition:
    """What one trial shows: the factor levels it was read under, resolved into the screen's parts.

    `look` None: no map. `levels` is empty for designs without factors (their arm says it all)."""

    workflow: str
    look: str | None
    source_label: str
    confidence_display: str
    levels: tuple[tuple[str, str], ...] = ()  # (factor, level) in declared order
    advice_model: str | None = None  # None: the design's model (data.model)
    map_source: str = OWN_MAP

    @property
    def shows_ai(self) -> bool:
        return self.workflow != "control"

    def level_dict(self) -> dict[str, str]:
        return dict(self.levels)


def between_factors(factors: tuple[Factor, ...]) -> tuple[Factor, ...]:
    return tuple(f for f in factors if f.vary == "between")


def within_factors(factors: tuple[Factor, ...]) -> tuple[Factor, ...]:
    return tuple(f for f in factors if f.vary == "within")


def cells(factors: tuple[Factor, ...]) -> list[tuple[str, ...]]:
    """Every combination of the factors' levels, the first factor varying slowest."""
    return list(itertools.product(*(f.levels for f in factors)))


def allocation_units(factors: tuple[Factor, ...]) -> tuple[str, ...]:
    """What allocation assigns: every between cell with every within rotation."""
    between = [LEVEL_JOIN.join(cell) or ALL_CELLS for cell in cells(between_factors(factors))]
    rotations = len(cells(within_factors(factors)))
    if rotations == 1:
        return tuple(between)
    return tuple(f"{cell}{ROTATION_MARK}{r}" for cell in between for r in range(rotations))


def read_unit(factors: tuple[Factor, ...], unit: str) -> tuple[dict[str, str], int]:
    """(between factor -> level, rotation) of an allocation unit such as 'verify+contour@1'."""
    cell, _, rotation = unit.partition(ROTATION_MARK)
    between = between_factors(factors)
    levels = [] if cell == ALL_CELLS else cell.split(LEVEL_JOIN)
    if len(levels) != len(between):
        raise ValueError(f"allocation unit {unit!r} does not name one level of each between factor")
    return dict(zip((f.name for f in between), levels, strict=True)), int(rotation or 0)


def trial_schedule(factors: tuple[Factor, ...], unit: str, n_cases: int,
                   shuffled: list[int]) -> list[tuple[int, dict[str, str]]]:
    """(case index, factor -> level) of each trial in reading order.

    `shuffled` is the participant's case order (`flow.case_order`). Case j is read under within cell
    (j + r) mod L; `blocks` factors group the reading by their level, blocks in rotated order."""
    between, rotation = read_unit(factors, unit)
    within = within_factors(factors)
    within_cells = cells(within)
    by_case = {j: dict(zip((f.name for f in within), within_cells[(j + rotation) % len(within_cells)], strict=True))
               for j in range(n_cases)}
    blocked = [f for f in within if f.schedule == "blocks"]
    order = list(shuffled)
    if blocked:
        def block_rank(j: int) -> tuple[int, ...]:
            return tuple((f.levels.index(by_case[j][f.name]) - rotation) % len(f.levels) for f in blocked)
        order.sort(key=block_rank)  # stable: the shuffled order is kept inside each block
    return [(j, {**between, **by_case[j]}) for j in order]


def resolve(factors: tuple[Factor, ...], levels: dict[str, str], fixed_workflow: str, default_look: str | None,
            default_display: str) -> Condition:
    """The screen's parts for one combination of levels; what no factor sets keeps the design's default."""
    workflow, look, source, display = fixed_workflow, default_look, DEFAULT_SOURCE, default_display
    model, map_source = None, OWN_MAP
    for factor in factors:
        level = levels[factor.name]
        if factor.sets == "workflow":
            workflow = level
        elif factor.sets == "explanation":
            look, map_source = factor.look(level), factor.map_source(level)
        elif factor.sets == "source":
            source = factor.label(level)
        elif factor.sets == "confidence":
            display = level
        elif factor.sets == "advice_model":
            model = factor.model(level)
    return Condition(workflow, look, source, display, tuple((f.name, levels[f.name]) for f in factors), model,
                     map_source)


def models_needed(factors: tuple[Factor, ...]) -> set[str]:
    """Every model a factor design names: advising models and the models whose maps are shown."""
    names = {f.model(level) for f in factors if f.sets == "advice_model" for level in f.levels}
    names |= {f.map_source(level).removeprefix(OTHER_MODEL_MAP) for f in factors if f.sets == "explanation"
              for level in f.levels if f.map_source(level).startswith(OTHER_MODEL_MAP)}
    return names


def level_problem(factor: Factor, level: str) -> str | None:
    """Why `level` cannot be a level of `factor`, or None."""
    if factor.sets == "workflow" and level not in WORKFLOWS:
        return f"workflow levels are {', '.join(WORKFLOWS)}"
    if factor.sets == "confidence" and level not in CONFIDENCE_DISPLAYS:
        return f"confidence levels are {', '.join(CONFIDENCE_DISPLAYS)}"
    if factor.sets == "explanation" and factor.looks.get(level, level) not in (NO_MAP, *OVERLAY_LOOKS):
        return (f"an explanation level is a look ({NO_MAP}, {', '.join(OVERLAY_LOOKS)}) or is given one in "
                f"[factors.{factor.name}.looks]")
    source = factor.map_source(level)
    if source not in (OWN_MAP, RANDOMISED_MAP) and not (source.startswith(OTHER_MODEL_MAP)
                                                         and len(source) > len(OTHER_MODEL_MAP)):
        return f"its map is {source!r}; use {OWN_MAP}, {RANDOMISED_MAP} or {OTHER_MODEL_MAP}NAME"
    return None


