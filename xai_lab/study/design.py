"""Study designs as records: frozen dataclasses, the limits a design must keep, its fingerprint.

`xai_lab.study.design_file` reads a TOML file in `studies/` into these records and validates it;
everything else in the lab reads only the records. The schema, section by section, is in
docs/studies.md.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from xai_lab.explain.looks import DEFAULT_LOOK

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
    # The lower 95% bound the model's validation AUROC must reach before the study is prepared or
    # served (xai_lab.model.quality); None: the dataset card's floor, else the lab's default.
    min_val_auroc: float | None = None


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
    parameters: dict[str, Any] = field(default_factory=dict)  # the method's parameters that differ from its defaults


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

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> StudyDesign:
        """The design `to_json` wrote (as the database holds it); sections added later take their defaults."""
        rating = dict(raw["peer_rating"])
        analysis = dict(raw.get("analysis") or {})
        allocation = raw["allocation"]
        explanation = {**raw["explanation"]}
        explanation.setdefault("look", default_looks(tuple(raw["arms"])))
        return cls(
            id=raw["id"], title=raw["title"], seed=raw["seed"], arms=tuple(raw["arms"]),
            consent_text=raw["consent_text"], withdrawal=raw["withdrawal"], instructions=dict(raw["instructions"]),
            debrief_text=raw["debrief_text"], data=DataSpec(**raw["data"]) if raw["data"] else None,
            cases=CaseSpec(**raw["cases"]),
            allocation=AllocationSpec(kind=allocation["kind"], strata=tuple(allocation["strata"]),
                                      block_sizes=tuple(allocation["block_sizes"])),
            explanation=ExplanationSpec(**explanation), attention=AttentionSpec(**raw["attention"]),
            profile=tuple(Choice(c["name"], tuple(c["options"])) for c in raw["profile"]),
            questionnaires=tuple(Instrument(q["id"], q["title"], _likert_items(q["items"]))
                                 for q in raw["questionnaires"]),
            peer_rating=PeerRatingSpec(**{**rating, "items": _likert_items(rating["items"]),
                                          "vignettes": tuple(Vignette(**v) for v in rating["vignettes"])}),
            enrolment=EnrolmentSpec(**raw.get("enrolment", {})), trials=TrialSpec(**raw.get("trials", {})),
            analysis=AnalysisSpec(**{**analysis, "contrast": tuple(analysis.get("contrast", ())),
                                     "secondary": tuple(analysis.get("secondary", ()))}),
            source=raw.get("source", ""))

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
        if not explanation["parameters"]:
            del explanation["parameters"]
        if content["data"] and content["data"]["min_val_auroc"] is None:  # added later: counts only when set
            del content["data"]["min_val_auroc"]
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _likert_items(rows: list[dict[str, Any]]) -> tuple[LikertItem, ...]:
    return tuple(LikertItem(**{**row, "anchors": tuple(row["anchors"])}) for row in rows)


def order_arms(assignment: str) -> list[str]:
    """The arms of an assignment in reading order: ['rely'] for a between design's 'rely',
    ['verify', 'rely'] for a within design's 'verify>rely' (period 1 is verify)."""
    return assignment.split(ORDER_SEPARATOR)


def _rotations(arms: tuple[str, ...]) -> list[tuple[str, ...]]:
    # A Latin square of orders: each arm appears once in each position (for two arms: AB, BA).
    return [arms[i:] + arms[:i] for i in range(len(arms))]


def default_looks(arms: tuple[str, ...]) -> dict[str, str]:
    return {arm: DEFAULT_LOOK for arm in arms if arm != "control"}


DEFAULT_PROFILE = (
    Choice("role", ("consultant / attending", "resident / registrar", "radiographer", "nurse", "student", "other")),
    Choice("specialty", ("radiology", "emergency medicine", "internal medicine", "general practice",
                         "respiratory medicine", "other")),
    Choice("experience_years", ("0-2", "3-5", "6-10", "11-20", "over 20")),
    Choice("prior_ai_use", ("never", "a few times", "monthly", "weekly", "daily")),
)
