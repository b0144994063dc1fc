"""Reading a study design file: TOML in, a validated `StudyDesign` out.

Every problem is one `ConfigError` naming the file, the key and the fix (see `design_toml`);
checks that span sections (trials need data, by-arm vignettes need a between design) run last.
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from xai_lab.errors import ConfigError
from xai_lab.explain.catalogue import METHOD_SPECS
from xai_lab.explain.looks import DEFAULT_LOOK, OVERLAY_LOOKS
from xai_lab.paths import check_name
from xai_lab.study.design import (
    ADVICE_KINDS,
    ARMS,
    DEFAULT_PROFILE,
    IMPORTED_ADVICE,
    LANGUAGES,
    MAX_BLOCK_SIZE,
    MAX_DESIGN_BYTES,
    MAX_SEED,
    AllocationSpec,
    AttentionSpec,
    CaseSpec,
    Choice,
    DataSpec,
    EnrolmentSpec,
    ExplanationSpec,
    Instrument,
    LikertItem,
    PeerRatingSpec,
    StudyDesign,
    TrialSpec,
    Vignette,
    default_looks,
)
from xai_lab.study.design_analysis import read_analysis
from xai_lab.study.design_factors import factor_arms, factor_checks, read_factors
from xai_lab.study.design_fields import read_section, read_setting
from xai_lab.study.design_recruitment import read_recruitment
from xai_lab.study.design_toml import TomlTable, identifier, short, unique_ids
from xai_lab.study.factors import allocation_units


def load_design(path: str | Path) -> StudyDesign:
    """Read and validate a design file; every problem is a `ConfigError` naming key and fix."""
    path = Path(path)
    text = _read_design_text(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML ({error}); fix the syntax at that line") from None
    except RecursionError:
        raise ConfigError(f"{path} nests arrays or tables too deeply for a study design; a design needs at most "
                          "a few levels ([section], [[section.items]])") from None
    return parse_design(raw, str(path))


def _read_design_text(path: Path) -> str:
    """The file's text, refusing what is not a regular file (a device, a pipe, a folder) or is larger
    than any design needs, before reading it: `/dev/zero` would otherwise be read forever."""
    if not path.exists():
        raise ConfigError(f"no study design at {path}; give the path of a .toml file such as studies/demo.toml")
    if not path.is_file():
        raise ConfigError(f"{path} is not a regular file; give the path of a .toml design file")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_DESIGN_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"cannot read the study design {path} ({error.strerror or error}); check the path and "
                          "its permissions") from None
    if len(data) > MAX_DESIGN_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_DESIGN_BYTES // 1024} KiB, far more than a study design needs; "
                          "check that this is the design file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text; save the design as a UTF-8 TOML file") from None


def parse_design(raw: dict[str, Any], source: str = "<design>") -> StudyDesign:
    top = TomlTable(raw, source, "")
    study_id = top.string("id")
    try:
        check_name(study_id, "study id")
    except ConfigError as error:
        raise ConfigError(f"{source}: id: {error}") from None
    factors = read_factors(top.table("factors", optional=True))
    arms = factor_arms(top, factors) if factors else _arms(top)
    units = allocation_units(factors) if factors else None
    cases = _cases(top.table("cases", optional=True))
    data = _data(top.table("data", optional=True), cases)
    design = StudyDesign(
        id=study_id, title=top.string("title"), seed=top.integer("seed", default=0, low=0, high=MAX_SEED),
        arms=arms,
        consent_text=top.string("consent"),
        withdrawal=top.choice("withdrawal", ("delete", "keep"), default="delete"),
        instructions=_instructions(top.table("instructions"), arms),
        debrief_text=top.string("debrief"),
        data=data, cases=cases,
        allocation=_allocation(top.table("allocation", optional=True), arms, units),
        explanation=_explanation(top.table("explanation", optional=True), arms),
        attention=_attention(top.table("attention", optional=True)),
        profile=_profile(top.table("profile", optional=True)),
        questionnaires=tuple(_instrument(t) for t in top.tables("questionnaire")),
        peer_rating=_peer_rating(top.table("peer_rating", optional=True), arms),
        enrolment=_enrolment(top.table("enrolment", optional=True)),
        trials=_trials(top.table("trials", optional=True)),
        analysis=read_analysis(top.table("analysis", optional=True), arms, factors),
        factors=factors,
        language=top.choice("language", LANGUAGES, default="en"),
        recruitment=read_recruitment(top.table("recruitment", optional=True)),
        source=source,
    )
    top.done()
    _cross_checks(design, top)
    if factors:
        factor_checks(design, top)
    return design


def _arms(top: TomlTable) -> tuple[str, ...]:
    if "arms" not in top.raw:
        top.fail("arms", "is missing; list the arms to compare, e.g. arms = [\"verify\", \"rely\"]")
    arms = tuple(top.strings("arms"))
    for arm in arms:
        if arm not in ARMS:
            top.fail("arms", f"lists unknown arm {arm!r}; use verify, rely and optionally control (or declare "
                             "[factors.workflow] for on_demand)")
    if len(set(arms)) != len(arms) or len(arms) < 1:
        top.fail("arms", "must list each arm once, e.g. [\"verify\", \"rely\"]")
    return arms


def _cross_checks(design: StudyDesign, top: TomlTable) -> None:
    if design.has_trials and design.data is None:
        top.fail("data", "is required when cases.n > 0: add [data] with dataset and model names")
    if design.cases.n + design.cases.practice + design.attention.count > 0 and design.data is None:
        top.fail("data", "is required for practice trials and attention checks: add [data]")
    if design.attention.count and design.attention.count > design.cases.n:
        top.fail("attention.count", f"({design.attention.count}) cannot exceed cases.n ({design.cases.n})")
    rating = design.peer_rating
    if rating.kind == "peer_record" and not design.has_trials:
        top.fail("peer_rating.kind", "peer_record needs trials to rate (cases.n > 0); use kind = \"vignette\"")
    if rating.assignment == "by_arm" and design.allocation.kind != "between":
        top.fail("peer_rating.assignment", "by_arm needs allocation.kind = \"between\"")
    if rating.kind == "vignette" or (rating.kind == "peer_record" and rating.fallback == "vignette"):
        missing = [arm for arm in design.arms if arm not in {v.target_arm for v in rating.vignettes}]
        if rating.assignment == "by_arm" and missing:
            top.fail("peer_rating.vignettes", f"has no vignette for arm(s) {', '.join(missing)}; add one per arm")
        if not rating.vignettes:
            top.fail("peer_rating.vignettes", "is empty; add [[peer_rating.vignettes]] with id, target_arm, text")
        if rating.assignment == "balanced" and rating.per_rater > len(rating.vignettes):
            top.fail("peer_rating.per_rater", f"({rating.per_rater}) exceeds the {len(rating.vignettes)} vignettes a "
                                              "rater could be shown; add vignettes or lower per_rater")


def _data(table: TomlTable | None, cases: CaseSpec) -> DataSpec | None:
    if table is None:
        return None
    spec = DataSpec(**read_section(table, DataSpec))
    table.done()
    imported = cases.imported_advice
    if imported is not None and spec.model not in (None, imported):
        table.fail("model", f"is {spec.model!r} but [cases] advice = \"imported:{imported}\" makes the advice set "
                            f"{imported!r} the study's model; leave model out (or set it to {imported!r})")
    spec = replace(spec, model=spec.model or imported or "")
    if not spec.model:
        table.fail("model", "is missing; name the model under $XAI_LAB_HOME/models (or set [cases] advice = "
                            "\"imported:NAME\" for a vendor's advice set)")
    for key, value in (("dataset", spec.dataset), ("model", spec.model)):
        try:
            check_name(value, key)
        except ConfigError as error:
            table.fail(key, str(error))
    return spec


def _cases(table: TomlTable | None) -> CaseSpec:
    if table is None:
        return CaseSpec()
    spec = CaseSpec(**read_section(table, CaseSpec))
    advice = table.string("advice", default="model")
    if advice not in ADVICE_KINDS:
        name = advice.removeprefix(IMPORTED_ADVICE)
        if not advice.startswith(IMPORTED_ADVICE):
            table.fail("advice", f"is {advice!r}; use model, planted or imported:NAME (a vendor's advice set from "
                                 "'xai-lab advice import')")
        try:
            check_name(name, "advice set name")
        except ConfigError as error:
            table.fail("advice", str(error))
    table.done()
    return replace(spec, advice=advice)


def _allocation(table: TomlTable | None, arms: tuple[str, ...], units: tuple[str, ...] | None) -> AllocationSpec:
    # what one block must hold equally often: arms (between), arm orders (within), or factor cells
    unit = len(units) if units else len(arms)
    what = "between cells and rotations of [factors]" if units else None
    if table is None:
        return AllocationSpec(block_sizes=(unit, 2 * unit) if 2 * unit <= MAX_BLOCK_SIZE else (unit,))
    kind = read_setting(table, AllocationSpec, "kind")
    strata = tuple(table.strings("strata", default=[]))
    for name in strata:
        if name not in ("role", "specialty", "prior_ai_use"):
            table.fail("strata", f"lists {name!r}; stratify by role, specialty or prior_ai_use")
    sizes = table.raw_value("block_sizes", [unit, 2 * unit], "a list of integers")
    if not isinstance(sizes, list) or not 1 <= len(sizes) <= 8 or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 < s <= MAX_BLOCK_SIZE and s % unit == 0
            for s in sizes):
        table.fail("block_sizes", f"must list 1-8 multiples of {unit} (the number of "
                                  f"{what or ('arms' if kind == 'between' else 'arm orders')}) up to {MAX_BLOCK_SIZE}, "
                                  f"e.g. [{unit}, {2 * unit}]; got {short(sizes)}")
    if kind == "within" and len(arms) < 2 and not units:
        table.fail("kind", "within needs at least two arms")
    table.done()
    return AllocationSpec(kind=kind, strata=strata, block_sizes=tuple(sorted(set(sizes))))


def _explanation(table: TomlTable | None, arms: tuple[str, ...]) -> ExplanationSpec:
    default_overlay = {arm: arm != "control" for arm in arms}
    if table is None:
        return ExplanationSpec(overlay=default_overlay, look=default_looks(arms))
    method = table.string("method", default="default")
    if method != "default" and method not in METHOD_SPECS:
        table.fail("method", f"is {method!r}; use \"default\" or one of {', '.join(METHOD_SPECS)}")
    overlay_table = table.table("overlay", optional=True)
    overlay = dict(default_overlay)
    if overlay_table is not None:
        for arm in arms:
            overlay[arm] = overlay_table.boolean(arm, default_overlay[arm])
        overlay_table.done()
        if overlay.get("control"):
            table.fail("overlay.control", "must be false: the control arm sees no AI")
    spec = ExplanationSpec(method=method, overlay=overlay, look=_looks(table.table("look", optional=True), arms),
                           parameters=_method_parameters(table, method), **read_section(table, ExplanationSpec))
    table.done()
    return spec


def _method_parameters(explanation: TomlTable, method: str) -> dict[str, Any]:
    """[explanation.parameters]: values for the named method's parameters (`xai-lab explain methods`)."""
    table = explanation.table("parameters", optional=True)
    if table is None:
        return {}
    if method == "default":
        explanation.fail("parameters", "needs a named method: set explanation.method (the default method is "
                                       "chosen per model, so its parameters are not known here)")
    spec = METHOD_SPECS[method]
    values = {}
    for parameter in spec.parameters:
        if parameter.name in table.raw:
            value = table.raw_value(parameter.name, parameter.default, "a value")
            problem = parameter.problem(value)
            if problem:
                table.fail(parameter.name, problem)
            values[parameter.name] = value
        table.read.add(parameter.name)  # named in the unknown-key message as allowed
    table.done()
    return values


def _looks(table: TomlTable | None, arms: tuple[str, ...]) -> dict[str, str]:
    looks = default_looks(arms)
    if table is None:
        return looks
    for arm in looks:
        looks[arm] = table.choice(arm, OVERLAY_LOOKS, default=DEFAULT_LOOK)
    table.done()
    return looks


def _attention(table: TomlTable | None) -> AttentionSpec:
    if table is None:
        return AttentionSpec()
    spec = AttentionSpec(**read_section(table, AttentionSpec, count=1, answer=None))  # a present table: one check
    table.done()
    return replace(spec, prompt=spec.prompt.replace("{answer}", spec.answer))


def _profile(table: TomlTable | None) -> tuple[Choice, ...]:
    if table is None:
        return DEFAULT_PROFILE
    choices = []
    for default in DEFAULT_PROFILE:
        options = tuple(table.strings(default.name, default=list(default.options)))
        if len(set(options)) != len(options) or len(options) < 2:
            table.fail(default.name, "must list at least two distinct options")
        choices.append(Choice(default.name, options))
    table.done()
    return tuple(choices)


def _likert(table: TomlTable) -> LikertItem:
    item = LikertItem(id=identifier(table), **read_section(table, LikertItem))
    if item.scale_max <= item.scale_min:
        table.fail("scale_max", f"must be above scale_min ({item.scale_min})")
    if len(item.anchors) != 2:
        table.fail("anchors", "must give two labels: the low end and the high end")
    table.done()
    return item


def _instrument(table: TomlTable) -> Instrument:
    items = tuple(_likert(t) for t in table.tables("items"))
    instrument = Instrument(id=identifier(table), title=table.string("title"), items=items)
    if not items:
        table.fail("items", "is empty; add [[questionnaire.items]] with id and text")
    unique_ids(table, "items", [i.id for i in items])
    table.done()
    return instrument


def _peer_rating(table: TomlTable | None, arms: tuple[str, ...]) -> PeerRatingSpec:
    if table is None:
        return PeerRatingSpec()
    vignettes = []
    for entry in table.tables("vignettes"):
        vignette = Vignette(id=identifier(entry), **read_section(entry, Vignette))
        entry.done()
        vignettes.append(vignette)
    items = tuple(_likert(t) for t in table.tables("items"))
    spec = PeerRatingSpec(items=items, vignettes=tuple(vignettes),
                          **read_section(table, PeerRatingSpec, kind="vignette"))  # a present table: vignettes
    if spec.kind != "none" and not items:
        table.fail("items", "is empty; add [[peer_rating.items]] with id and text (e.g. clinical skill, 1-7)")
    unique_ids(table, "items", [i.id for i in items])
    unique_ids(table, "vignettes", [v.id for v in vignettes])
    if spec.assignment == "by_arm" and spec.per_rater != 1:
        table.fail("per_rater", "must be 1 with assignment = \"by_arm\" (one vignette per rater)")
    table.done()
    return spec


def _trials(table: TomlTable | None) -> TrialSpec:
    if table is None:
        return TrialSpec()
    spec = TrialSpec(**read_section(table, TrialSpec))
    table.done()
    return spec


def _enrolment(table: TomlTable | None) -> EnrolmentSpec:
    if table is None:
        return EnrolmentSpec()
    spec = EnrolmentSpec(**read_section(table, EnrolmentSpec))
    table.done()
    return spec


def _instructions(table: TomlTable, arms: tuple[str, ...]) -> dict[str, str]:
    texts = {arm: table.string(arm) for arm in arms}
    table.done()
    return texts
