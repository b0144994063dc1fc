"""Study designs: TOML files in `studies/`, read into frozen dataclasses and validated.

Every error names the file, the key and the fix, e.g.
``studies/demo.toml: cases.ai_wrong_share must be a number from 0 to 1, got 1.5``.
Unknown keys are refused (a misspelt key silently ignored would change the experiment).
The schema, section by section, is documented in docs/studies.md.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xai_lab.errors import ConfigError
from xai_lab.explain.looks import DEFAULT_LOOK, OVERLAY_LOOKS
from xai_lab.explain.methods import METHODS
from xai_lab.paths import check_name

ARMS = ("verify", "rely", "control")
PROFILE_FIELDS = ("role", "specialty", "experience_years", "prior_ai_use")
CONFIDENCE_DISPLAYS = ("percent", "none")
# A map for a "no finding" suggestion marks what looks normal, and colour reads as "finding here":
# withheld by default (docs/explanations.md), explained in words when the design asks for it.
NORMAL_ADVICE = ("withhold", "explain")
SCORE_QUESTIONS = ("confidence", "probability")
ORDER_SEPARATOR = ">"  # a within design's assignment names its arms in order: "verify>rely"
# Rate metrics with a between-arm risk difference (xai_lab.analysis.risk_difference); AI_METRICS need the AI shown.
RATE_METRICS = ("over_reliance", "under_reliance", "agreement", "accuracy_final")
AI_METRICS = ("over_reliance", "under_reliance", "agreement")
# Bounds on what a design may ask for; each is far beyond any real study and far below what
# would stall the server (a block of 20 million slots once took minutes under the write lock).
MAX_DESIGN_BYTES = 256 * 1024
MAX_BLOCK_SIZE = 60
MAX_ENROLMENTS = 100_000
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class DataSpec:
    dataset: str
    model: str
    # How `study prepare` builds a missing dataset: "synthetic" (the embedded generator) or a
    # file for `xai-lab data import` (relative paths are relative to the design file).
    build: str = "synthetic"


@dataclass(frozen=True)
class CaseSpec:
    n: int = 0  # main trials per participant
    practice: int = 0  # practice trials (not exported as trials)
    ai_wrong_share: float = 0.2
    positive_share: float = 0.5
    # "model": AI errors are the model's real errors only; "planted": wrong advice is planted
    # (flagged advice_source=planted) where the model has too few real errors.
    advice: str = "model"
    split: str = "test"


@dataclass(frozen=True)
class AllocationSpec:
    kind: str = "between"  # "between" (one arm each) or "within" (every arm, counterbalanced order)
    strata: tuple[str, ...] = ()
    block_sizes: tuple[int, ...] = ()  # multiples of the number of arms (or of orders, within)


@dataclass(frozen=True)
class ExplanationSpec:
    method: str = "default"  # a method name, or "default": the model card's evidence-based choice
    overlay: dict[str, bool] = field(default_factory=dict)  # arm -> show the overlay
    confidence_display: str = "percent"
    min_confidence: float = 0.0  # below this AI confidence the overlay is withheld (Saporta et al.)
    look: dict[str, str] = field(default_factory=dict)  # arm -> overlay look (explain/looks.py)
    normal_advice: str = "withhold"  # the map for a "normal" suggestion: withhold or explain


@dataclass(frozen=True)
class AttentionSpec:
    count: int = 0
    prompt: str = "This is an attention check: choose '{answer}' for this image, whatever it shows."
    answer: str = ""


@dataclass(frozen=True)
class Choice:
    """A profile question: the options a participant picks from (free text is never stored)."""

    name: str
    options: tuple[str, ...]


@dataclass(frozen=True)
class LikertItem:
    id: str
    text: str
    scale_min: int = 1
    scale_max: int = 7
    anchors: tuple[str, str] = ("strongly disagree", "strongly agree")


@dataclass(frozen=True)
class Instrument:
    id: str
    title: str
    items: tuple[LikertItem, ...]


@dataclass(frozen=True)
class Vignette:
    id: str
    target_arm: str
    text: str


@dataclass(frozen=True)
class PeerRatingSpec:
    kind: str = "none"  # "none", "vignette" or "peer_record"
    per_rater: int = 1
    assignment: str = "balanced"  # vignettes: "by_arm" (the rater's own arm, Yang/Dai) or "balanced"
    fallback: str = "vignette"  # peer_record before enough records exist: "vignette" or "pilot"
    show_correctness: bool = False
    items: tuple[LikertItem, ...] = ()
    vignettes: tuple[Vignette, ...] = ()


@dataclass(frozen=True)
class TrialSpec:
    # What the slider asks on a trial: "confidence" (how sure of your own answer, 0-100) or
    # "probability" (how likely the case shows the positive class, 0-100: the rating an ROC needs).
    # Either way the export gives initial_score / final_score as the probability of the positive class.
    score: str = "confidence"
    # After each practice case, say what the image shows (and what the AI said). Off by default:
    # feedback teaches, and whether a study may teach before measuring is the designer's call.
    practice_feedback: bool = False


@dataclass(frozen=True)
class AnalysisSpec:
    """The pre-declared estimand: one primary metric, its arm contrast (a - b, a risk difference on the
    probability scale), the secondary family Holm-corrected together, and optionally the difference
    the study was sized for. Empty: the analysis uses its defaults and says so."""

    primary: str = ""
    contrast: tuple[str, ...] = ()  # (a, b): the estimand is metric(a) - metric(b)
    secondary: tuple[str, ...] = ()
    effect: float | None = None  # the risk difference the study is powered to detect


@dataclass(frozen=True)
class EnrolmentSpec:
    # Most participants the shared enrolment code (?code=) may enrol; None = no cap. Personal
    # invitation links (`xai-lab invite`) are not counted: each was made for one person.
    max_enrolments: int | None = None


@dataclass(frozen=True)
class StudyDesign:
    id: str
    title: str
    seed: int
    arms: tuple[str, ...]
    consent_text: str
    withdrawal: str  # "delete" or "keep": what withdrawal does to the data (as the consent text says)
    instructions: dict[str, str]  # arm -> text
    debrief_text: str
    data: DataSpec | None
    cases: CaseSpec
    allocation: AllocationSpec
    explanation: ExplanationSpec
    attention: AttentionSpec
    profile: tuple[Choice, ...]
    questionnaires: tuple[Instrument, ...]
    peer_rating: PeerRatingSpec
    enrolment: EnrolmentSpec = EnrolmentSpec()
    trials: TrialSpec = TrialSpec()
    analysis: AnalysisSpec = AnalysisSpec()
    source: str = ""  # the file it came from

    @property
    def has_trials(self) -> bool:
        return self.cases.n > 0

    @property
    def orders(self) -> tuple[str, ...]:
        """What allocation assigns: an arm (between) or an arm order such as 'verify>rely' (within)."""
        if self.allocation.kind == "between":
            return self.arms
        return tuple(ORDER_SEPARATOR.join(order) for order in _rotations(self.arms))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> str:
        """SHA-256 of the design's content (not its file name): a changed design is a new design."""
        content = {k: v for k, v in self.to_json().items() if k != "source"}
        # Sections added after studies were registered count only when set, so an unchanged design
        # keeps its fingerprint (and its participants) across upgrades.
        for key, default in (("enrolment", EnrolmentSpec()), ("trials", TrialSpec()), ("analysis", AnalysisSpec())):
            if content[key] == asdict(default):
                del content[key]
        explanation = content["explanation"]
        if explanation["look"] == default_looks(self.arms) and explanation["normal_advice"] == "withhold":
            del explanation["look"], explanation["normal_advice"]
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def order_arms(assignment: str) -> list[str]:
    """The arms of an assignment in reading order: ['rely'] for a between design's 'rely',
    ['verify', 'rely'] for a within design's 'verify>rely' (period 1 is verify)."""
    return assignment.split(ORDER_SEPARATOR)


def _rotations(arms: tuple[str, ...]) -> list[tuple[str, ...]]:
    # A Latin square of orders: each arm appears once in each position (for two arms: AB, BA).
    return [arms[i:] + arms[:i] for i in range(len(arms))]


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
    top = _Table(raw, source, "")
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


def _cross_checks(design: StudyDesign, top: _Table) -> None:
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


class _Table:
    """Typed access to one TOML table that remembers which keys were read."""

    def __init__(self, raw: Any, source: str, prefix: str) -> None:
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: {prefix.rstrip('.') or 'the file'} must be a table, got {type(raw).__name__}")
        self.raw, self.source, self.prefix, self.read = raw, source, prefix, set()

    def fail(self, key: str, problem: str) -> None:
        raise ConfigError(f"{self.source}: {self.prefix}{key} {problem}")

    def raw_value(self, key: str, default: Any, kind: str) -> Any:
        """The value as written (or the default); the typed readers below check it."""
        self.read.add(key)
        if key not in self.raw:
            if default is _REQUIRED:
                self.fail(key, f"is missing; add it ({kind})")
            return default
        return self.raw[key]

    def string(self, key: str, default: Any = None, allow_empty: bool = False) -> str:
        value = self.raw_value(key, _REQUIRED if default is None else default, "a string")
        if not isinstance(value, str) or (not allow_empty and not value.strip()):
            self.fail(key, f"must be a non-empty string, got {_short(value)}")
        return value.strip()

    def strings(self, key: str, default: Any = None) -> list[str]:
        value = self.raw_value(key, _REQUIRED if default is None else default, "a list of strings")
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.fail(key, f"must be a list of non-empty strings, got {_short(value)}")
        return [v.strip() for v in value]

    def integer(self, key: str, default: Any = None, low: int | None = None, high: int | None = None) -> int:
        value = self.raw_value(key, _REQUIRED if default is None else default, "an integer")
        if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low) \
                or (high is not None and value > high):
            bounds = f" from {low}" if low is not None else ""
            bounds += f" to {high}" if high is not None else (" or more" if low is not None else "")
            self.fail(key, f"must be an integer{bounds}, got {_short(value)}")
        return value

    def number(self, key: str, default: Any = None, low: float = 0.0, high: float = 1.0) -> float:
        value = self.raw_value(key, _REQUIRED if default is None else default, "a number")
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            self.fail(key, f"must be a number from {low:g} to {high:g}, got {_short(value)}")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw_value(key, default, "true or false")
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {_short(value)}")
        return value

    def choice(self, key: str, options: tuple[str, ...], default: Any = None) -> str:
        value = self.raw_value(key, _REQUIRED if default is None else default, f"one of {', '.join(options)}")
        if value not in options:
            self.fail(key, f"must be one of {', '.join(repr(o) for o in options)}, got {_short(value)}")
        return value

    def table(self, key: str, optional: bool = False) -> _Table | None:
        value = self.raw_value(key, None if optional else _REQUIRED, "a table")
        if value is None:
            return None
        if not isinstance(value, dict):
            self.fail(key, f"must be a table ([{self.prefix}{key}]), got {type(value).__name__}")
        return _Table(value, self.source, f"{self.prefix}{key}.")

    def tables(self, key: str) -> list[_Table]:
        value = self.raw_value(key, [], "an array of tables")
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(key, f"must be an array of tables ([[{self.prefix}{key}]])")
        return [_Table(v, self.source, f"{self.prefix}{key}[{i}].") for i, v in enumerate(value)]

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.read)
        if unknown:
            allowed = ", ".join(sorted(self.read))
            raise ConfigError(f"{self.source}: unknown key {self.prefix}{unknown[0]}; "
                              f"the keys allowed here are: {allowed} (check the spelling)")


_REQUIRED = object()


def _data(table: _Table | None) -> DataSpec | None:
    if table is None:
        return None
    spec = DataSpec(dataset=table.string("dataset"), model=table.string("model"),
                    build=table.string("build", default="synthetic"))
    table.done()
    for key, value in (("dataset", spec.dataset), ("model", spec.model)):
        try:
            check_name(value, key)
        except ConfigError as error:
            table.fail(key, str(error))
    return spec


def _cases(table: _Table | None) -> CaseSpec:
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


def _allocation(table: _Table | None, arms: tuple[str, ...]) -> AllocationSpec:
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
                                  f"e.g. [{unit}, {2 * unit}]; got {_short(sizes)}")
    if kind == "within" and len(arms) < 2:
        table.fail("kind", "within needs at least two arms")
    table.done()
    return AllocationSpec(kind=kind, strata=strata, block_sizes=tuple(sorted(set(sizes))))


def default_looks(arms: tuple[str, ...]) -> dict[str, str]:
    return {arm: DEFAULT_LOOK for arm in arms if arm != "control"}


def _explanation(table: _Table | None, arms: tuple[str, ...]) -> ExplanationSpec:
    default_overlay = {arm: arm != "control" for arm in arms}
    if table is None:
        return ExplanationSpec(overlay=default_overlay, look=default_looks(arms))
    method = table.string("method", default="default")
    if method != "default" and method not in METHODS:
        table.fail("method", f"is {method!r}; use \"default\" or one of {', '.join(METHODS)}")
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
                           normal_advice=table.choice("normal_advice", NORMAL_ADVICE, default="withhold"))
    table.done()
    return spec


def _looks(table: _Table | None, arms: tuple[str, ...]) -> dict[str, str]:
    looks = default_looks(arms)
    if table is None:
        return looks
    for arm in looks:
        looks[arm] = table.choice(arm, OVERLAY_LOOKS, default=DEFAULT_LOOK)
    table.done()
    return looks


def _attention(table: _Table | None) -> AttentionSpec:
    if table is None:
        return AttentionSpec()
    count = table.integer("count", default=1, low=0, high=10)
    answer = table.string("answer")
    prompt = table.string("prompt", default=AttentionSpec.prompt)
    table.done()
    return AttentionSpec(count=count, prompt=prompt.replace("{answer}", answer), answer=answer)


DEFAULT_PROFILE = (
    Choice("role", ("consultant / attending", "resident / registrar", "radiographer", "nurse", "student", "other")),
    Choice("specialty", ("radiology", "emergency medicine", "internal medicine", "general practice",
                         "respiratory medicine", "other")),
    Choice("experience_years", ("0-2", "3-5", "6-10", "11-20", "over 20")),
    Choice("prior_ai_use", ("never", "a few times", "monthly", "weekly", "daily")),
)


def _profile(table: _Table | None) -> tuple[Choice, ...]:
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


def _likert(table: _Table) -> LikertItem:
    item = LikertItem(id=_identifier(table), text=table.string("text"),
                      scale_min=table.integer("scale_min", default=1, low=0, high=10),
                      scale_max=table.integer("scale_max", default=7, low=1, high=11),
                      anchors=tuple(table.strings("anchors", default=list(LikertItem.anchors))))
    if item.scale_max <= item.scale_min:
        table.fail("scale_max", f"must be above scale_min ({item.scale_min})")
    if len(item.anchors) != 2:
        table.fail("anchors", "must give two labels: the low end and the high end")
    table.done()
    return item


_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")


def _identifier(table: _Table, key: str = "id") -> str:
    """Ids become step keys and export values: 1-48 letters, digits, '_', '-', '.'."""
    value = table.string(key)
    if not _ID_PATTERN.match(value):
        table.fail(key, f"must be 1-48 letters, digits, '_', '-' or '.', starting with a letter or digit; "
                        f"got {_short(value)}")
    return value


def _unique_ids(table: _Table, key: str, ids: list[str]) -> None:
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        table.fail(key, f"repeats the id {duplicates[0]!r}; give every entry its own id")


def _instrument(table: _Table) -> Instrument:
    items = tuple(_likert(t) for t in table.tables("items"))
    instrument = Instrument(id=_identifier(table), title=table.string("title"), items=items)
    if not items:
        table.fail("items", "is empty; add [[questionnaire.items]] with id and text")
    _unique_ids(table, "items", [i.id for i in items])
    table.done()
    return instrument


def _peer_rating(table: _Table | None, arms: tuple[str, ...]) -> PeerRatingSpec:
    if table is None:
        return PeerRatingSpec()
    kind = table.choice("kind", ("none", "vignette", "peer_record"), default="vignette")
    vignettes = []
    for entry in table.tables("vignettes"):
        vignette = Vignette(id=_identifier(entry), target_arm=entry.choice("target_arm", ARMS),
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
    _unique_ids(table, "items", [i.id for i in items])
    _unique_ids(table, "vignettes", [v.id for v in vignettes])
    if spec.assignment == "by_arm" and spec.per_rater != 1:
        table.fail("per_rater", "must be 1 with assignment = \"by_arm\" (one vignette per rater)")
    table.done()
    return spec


def _analysis(table: _Table | None, arms: tuple[str, ...]) -> AnalysisSpec:
    if table is None:
        return AnalysisSpec()
    primary = table.choice("primary", RATE_METRICS)
    text = table.string("contrast")
    parts = [part.strip() for part in text.split(" - ")]
    if len(parts) != 2 or parts[0] == parts[1] or not all(part in arms for part in parts):
        table.fail("contrast", f"must name two of the design's arms ({', '.join(arms)}) as \"a - b\", e.g. "
                               f"\"{arms[-1] if len(arms) > 1 else 'rely'} - {arms[0]}\"; got {_short(text)}")
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


def _trials(table: _Table | None) -> TrialSpec:
    if table is None:
        return TrialSpec()
    spec = TrialSpec(score=table.choice("score", SCORE_QUESTIONS, default="confidence"),
                     practice_feedback=table.boolean("practice_feedback", False))
    table.done()
    return spec


def _enrolment(table: _Table | None) -> EnrolmentSpec:
    if table is None:
        return EnrolmentSpec()
    cap = table.raw_value("max_enrolments", None, "an integer")
    spec = EnrolmentSpec(max_enrolments=None if cap is None else table.integer("max_enrolments", low=1,
                                                                                high=MAX_ENROLMENTS))
    table.done()
    return spec


def _short(value: Any) -> str:
    """A value for an error message, cut short: a pasted list of thousands must not flood the terminal."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _instructions(table: _Table, arms: tuple[str, ...]) -> dict[str, str]:
    texts = {arm: table.string(arm) for arm in arms}
    table.done()
    return texts
