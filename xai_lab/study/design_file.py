"""Reading a study design file: TOML in, a validated `StudyDesign` out.

Every problem is one `ConfigError` naming the file, the key and the fix (see `design_toml`);
checks that span sections (trials need data, by-arm vignettes need a between design) run last.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from xai_lab.errors import ConfigError
from xai_lab.explain.catalogue import METHOD_SPECS
from xai_lab.explain.looks import DEFAULT_LOOK, OVERLAY_LOOKS
from xai_lab.paths import check_name
from xai_lab.study.design import (
    AI_METRICS,
    ARMS,
    CONFIDENCE_DISPLAYS,
    DEFAULT_PROFILE,
    MAX_BLOCK_SIZE,
    MAX_DESIGN_BYTES,
    MAX_ENROLMENTS,
    MAX_SEED,
    NORMAL_ADVICE,
    RATE_METRICS,
    SCORE_QUESTIONS,
    AllocationSpec,
    AnalysisSpec,
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
from xai_lab.study.design_toml import TomlTable, identifier, short, unique_ids


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
    if "arms" not in raw:
        top.fail("arms", "is missing; list the arms to compare, e.g. arms = [\"verify\", \"rely\"]")
    arms = tuple(top.strings("arms"))
    for arm in arms:
        if arm not in ARMS:
            top.fail("arms", f"lists unknown arm {arm!r}; use verify, rely and optionally control")
    if len(set(arms)) != len(arms) or len(arms) < 1:
        top.fail("arms", "must list each arm once, e.g. [\"verify\", \"rely\"]")
    data = _data(top.table("data", optional=True))
    cases = _cases(top.table("cases", optional=True))
    design = StudyDesign(
        id=study_id, title=top.string("title"), seed=top.integer("seed", default=0, low=0, high=MAX_SEED),
        arms=arms,
        consent_text=top.string("consent"),
        withdrawal=top.choice("withdrawal", ("delete", "keep"), default="delete"),
        instructions=_instructions(top.table("instructions"), arms),
        debrief_text=top.string("debrief"),
        data=data, cases=cases,
        allocation=_allocation(top.table("allocation", optional=True), arms),
        explanation=_explanation(top.table("explanation", optional=True), arms),
        attention=_attention(top.table("attention", optional=True)),
        profile=_profile(top.table("profile", optional=True)),
        questionnaires=tuple(_instrument(t) for t in top.tables("questionnaire")),
        peer_rating=_peer_rating(top.table("peer_rating", optional=True), arms),
        enrolment=_enrolment(top.table("enrolment", optional=True)),
        trials=_trials(top.table("trials", optional=True)),
        analysis=_analysis(top.table("analysis", optional=True), arms),
        source=source,
    )
    top.done()
    _cross_checks(design, top)
    return design


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


def _data(table: TomlTable | None) -> DataSpec | None:
    if table is None:
        return None
    floor = table.number("min_val_auroc", default=None, low=0.5, high=1.0) if "min_val_auroc" in table.raw else None
    spec = DataSpec(dataset=table.string("dataset"), model=table.string("model"),
                    build=table.string("build", default="synthetic"), min_val_auroc=floor)
    table.done()
    for key, value in (("dataset", spec.dataset), ("model", spec.model)):
        try:
            check_name(value, key)
        except ConfigError as error:
            table.fail(key, str(error))
    return spec


def _cases(table: TomlTable | None) -> CaseSpec:
    if table is None:
        return CaseSpec()
    spec = CaseSpec(n=table.integer("n", default=0, low=0, high=500),
                    practice=table.integer("practice", default=0, low=0, high=20),
                    ai_wrong_share=table.number("ai_wrong_share", default=0.2),
                    positive_share=table.number("positive_share", default=0.5),
                    advice=table.choice("advice", ("model", "planted"), default="model"),
                    split=table.choice("split", ("test", "val"), default="test"))
    table.done()
    return spec


def _allocation(table: TomlTable | None, arms: tuple[str, ...]) -> AllocationSpec:
    if table is None:
        return AllocationSpec(block_sizes=(len(arms), 2 * len(arms)))
    kind = table.choice("kind", ("between", "within"), default="between")
    strata = tuple(table.strings("strata", default=[]))
    for name in strata:
        if name not in ("role", "specialty", "prior_ai_use"):
            table.fail("strata", f"lists {name!r}; stratify by role, specialty or prior_ai_use")
    unit = len(arms)
    sizes = table.raw_value("block_sizes", [unit, 2 * unit], "a list of integers")
    if not isinstance(sizes, list) or not 1 <= len(sizes) <= 8 or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 < s <= MAX_BLOCK_SIZE and s % unit == 0
            for s in sizes):
        table.fail("block_sizes", f"must list 1-8 multiples of {unit} (the number of "
                                  f"{'arms' if kind == 'between' else 'arm orders'}) up to {MAX_BLOCK_SIZE}, "
                                  f"e.g. [{unit}, {2 * unit}]; got {short(sizes)}")
    if kind == "within" and len(arms) < 2:
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
    spec = ExplanationSpec(method=method, overlay=overlay,
                           confidence_display=table.choice("confidence_display", CONFIDENCE_DISPLAYS,
                                                           default="percent"),
                           min_confidence=table.number("min_confidence", default=0.0),
                           look=_looks(table.table("look", optional=True), arms),
                           normal_advice=table.choice("normal_advice", NORMAL_ADVICE, default="withhold"),
                           parameters=_method_parameters(table, method))
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
    count = table.integer("count", default=1, low=0, high=10)
    answer = table.string("answer")
    prompt = table.string("prompt", default=AttentionSpec.prompt)
    table.done()
    return AttentionSpec(count=count, prompt=prompt.replace("{answer}", answer), answer=answer)


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
    item = LikertItem(id=identifier(table), text=table.string("text"),
                      scale_min=table.integer("scale_min", default=1, low=0, high=10),
                      scale_max=table.integer("scale_max", default=7, low=1, high=11),
                      anchors=tuple(table.strings("anchors", default=list(LikertItem.anchors))))
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
    kind = table.choice("kind", ("none", "vignette", "peer_record"), default="vignette")
    vignettes = []
    for entry in table.tables("vignettes"):
        vignette = Vignette(id=identifier(entry), target_arm=entry.choice("target_arm", ARMS),
                            text=entry.string("text"))
        entry.done()
        vignettes.append(vignette)
    items = tuple(_likert(t) for t in table.tables("items"))
    spec = PeerRatingSpec(kind=kind, per_rater=table.integer("per_rater", default=1, low=1, high=20),
                          assignment=table.choice("assignment", ("balanced", "by_arm"), default="balanced"),
                          fallback=table.choice("fallback", ("vignette", "pilot"), default="vignette"),
                          show_correctness=table.boolean("show_correctness", False),
                          items=items, vignettes=tuple(vignettes))
    if kind != "none" and not items:
        table.fail("items", "is empty; add [[peer_rating.items]] with id and text (e.g. clinical skill, 1-7)")
    unique_ids(table, "items", [i.id for i in items])
    unique_ids(table, "vignettes", [v.id for v in vignettes])
    if spec.assignment == "by_arm" and spec.per_rater != 1:
        table.fail("per_rater", "must be 1 with assignment = \"by_arm\" (one vignette per rater)")
    table.done()
    return spec


def _analysis(table: TomlTable | None, arms: tuple[str, ...]) -> AnalysisSpec:
    if table is None:
        return AnalysisSpec()
    primary = table.choice("primary", RATE_METRICS)
    text = table.string("contrast")
    parts = [part.strip() for part in text.split(" - ")]
    if len(parts) != 2 or parts[0] == parts[1] or not all(part in arms for part in parts):
        table.fail("contrast", f"must name two of the design's arms ({', '.join(arms)}) as \"a - b\", e.g. "
                               f"\"{arms[-1] if len(arms) > 1 else 'rely'} - {arms[0]}\"; got {short(text)}")
    if primary in AI_METRICS and "control" in parts:
        table.fail("contrast", f"compares control, which sees no AI, on {primary}; contrast two AI arms or choose "
                               "accuracy_final")
    secondary = tuple(table.strings("secondary", default=[]))
    for name in secondary:
        if name not in RATE_METRICS or name == primary:
            table.fail("secondary", f"lists {name!r}; use other metrics from {', '.join(RATE_METRICS)}")
    effect = table.raw_value("effect", None, "a number")
    spec = AnalysisSpec(primary=primary, contrast=tuple(parts), secondary=secondary,
                        effect=None if effect is None else table.number("effect", low=-1.0, high=1.0))
    if spec.effect == 0:
        table.fail("effect", "must be a non-zero risk difference (the one the study is sized to detect)")
    table.done()
    return spec


def _trials(table: TomlTable | None) -> TrialSpec:
    if table is None:
        return TrialSpec()
    spec = TrialSpec(score=table.choice("score", SCORE_QUESTIONS, default="confidence"),
                     practice_feedback=table.boolean("practice_feedback", False))
    table.done()
    return spec


def _enrolment(table: TomlTable | None) -> EnrolmentSpec:
    if table is None:
        return EnrolmentSpec()
    cap = table.raw_value("max_enrolments", None, "an integer")
    spec = EnrolmentSpec(max_enrolments=None if cap is None else table.integer("max_enrolments", low=1,
                                                                                high=MAX_ENROLMENTS))
    table.done()
    return spec


def _instructions(table: TomlTable, arms: tuple[str, ...]) -> dict[str, str]:
    texts = {arm: table.string(arm) for arm in arms}
    table.done()
    return texts
