"""Study designs as records: frozen dataclasses, the limits a design must keep, its fingerprint.

`xai_lab.study.design_file` reads a TOML file in `studies/` into these records and validates it;
everything else in the lab reads only the records. The schema, section by section, is in
docs/studies.md.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from xai_lab.errors import ConfigError
from xai_lab.explain.looks import DEFAULT_LOOK
from xai_lab.study.design_fields import from_record, setting, without_later_defaults
from xai_lab.study.factors import Factor, allocation_units, read_unit

ARMS = ("verify", "rely", "control")
# The languages of the lab's participant-facing strings (xai_lab/locale); the design's own texts are the researcher's.
LANGUAGES = ("en", "fr", "de")
ADVICE_KINDS = ("model", "planted")
IMPORTED_ADVICE = "imported:"  # [cases] advice = "imported:NAME": a vendor's advice set
PROFILE_FIELDS = ("role", "specialty", "experience_years", "prior_ai_use")
CONFIDENCE_DISPLAYS = ("percent", "verbal", "none")
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
# The version of the stored design's shape. Raise it when a setting is added (and give the setting
# `since=` the new number), so a release that cannot read a stored design says so instead of misreading it.
# 2: [factors] (conditions as factors) and analysis.factor. 3: [recruitment] (panels).
DESIGN_SCHEMA = 3


@dataclass(frozen=True)
class DataSpec:
    dataset: str = setting(help="dataset name under `$XAI_LAB_HOME/data` (built by `prepare` when missing)")
    # None only while reading: a design with [cases] advice = "imported:NAME" may leave it out (it is NAME)
    model: str | None = setting(None, help="model name under `$XAI_LAB_HOME/models` (trained by `prepare` when "
                                         "missing); leave it out when [cases] advice = \"imported:NAME\" (the advice "
                                         "set is the model)")
    # How `study prepare` builds a missing dataset: "synthetic" (the embedded generator) or a
    # file for `xai-lab data import` (relative paths are relative to the design file).
    build: str = setting("synthetic", help="`synthetic`, or a file for `xai-lab data import` (relative to the "
                                           "design file)")
    # The lower 95% bound the model's validation AUROC must reach before the study is prepared or
    # served (xai_lab.model.quality); None: the dataset card's floor, else the lab's default.
    min_val_auroc: float | None = setting(None, low=0.5, high=1.0, since=1,
                                          help="the quality gate's floor on the validation AUROC's lower 95% bound; "
                                               "unset: the dataset's floor, else the lab's")


@dataclass(frozen=True)
class CaseSpec:
    n: int = setting(0, low=0, high=500, help="main trials per participant")
    practice: int = setting(0, low=0, high=20, help="practice trials before them (not exported as trials)")
    ai_wrong_share: float = setting(0.2, low=0.0, high=1.0, help="share of main cases where the AI is wrong")
    positive_share: float = setting(0.5, low=0.0, high=1.0, help="share of main cases showing the finding")
    # "model": AI errors are the model's real errors only; "planted": wrong advice is planted
    # (flagged advice_source=planted) where the model has too few real errors; "imported:NAME": the
    # advice (and maps) of a vendor's advice set (`xai-lab advice import`), which then is the study's model.
    advice: str = setting("model", custom=True,
                          help="`model`: AI errors are the model's real errors; `planted`: plant wrong advice when "
                               "real errors run out; `imported:NAME`: a vendor's advice set (`xai-lab advice "
                               "import`), whose errors are its own")

    @property
    def imported_advice(self) -> str | None:
        """The advice set's name when the advice is imported (`imported:NAME`), else None."""
        return self.advice.removeprefix(IMPORTED_ADVICE) if self.advice.startswith(IMPORTED_ADVICE) else None
    split: str = setting("test", choices=("test", "val"), help="the split the cases come from")


@dataclass(frozen=True)
class AllocationSpec:
    kind: str = setting("between", choices=("between", "within"),
                        help="`between`: one arm each; `within`: every arm, in a counterbalanced order")
    strata: tuple[str, ...] = setting((), custom=True, help="stratify by `role`, `specialty`, `prior_ai_use`")
    block_sizes: tuple[int, ...] = setting((), custom=True,
                                           help="1-8 block sizes, multiples of the number of arms (or of orders, "
                                                f"within), at most {MAX_BLOCK_SIZE}")


@dataclass(frozen=True)
class ExplanationSpec:
    method: str = setting("default", custom=True,
                          help="a method name, or `default`: the model card's evidence-based choice")
    overlay: dict[str, bool] = setting({}, custom=True,
                                       help="`[explanation.overlay]`: per arm, whether a map is shown at all")
    confidence_display: str = setting("percent", choices=CONFIDENCE_DISPLAYS,
                                      help="how the AI's probability is shown")
    min_confidence: float = setting(0.0, low=0.0, high=1.0, help="below this AI confidence the map is withheld")
    look: dict[str, str] = setting({}, custom=True,
                                   help="`[explanation.look]`: per arm, `contour`, `side_by_side` or `heatmap`")
    normal_advice: str = setting("withhold", choices=NORMAL_ADVICE,
                                 help="the map for a \"normal\" suggestion: `withhold` or `explain`")
    parameters: dict[str, Any] = setting({}, custom=True,
                                         help="`[explanation.parameters]`: the named method's parameters that "
                                              "differ from its defaults")


@dataclass(frozen=True)
class AttentionSpec:
    count: int = setting(0, low=0, high=10, help="attention checks (1 when the table is present)")
    prompt: str = setting("This is an attention check: choose '{answer}' for this image, whatever it shows.",
                          help="the check's text; `{answer}` is replaced by the answer")
    answer: str = setting("", help="the class name the check asks for")


@dataclass(frozen=True)
class Choice:
    """A profile question: the options a participant picks from (free text is never stored)."""

    name: str
    options: tuple[str, ...]


@dataclass(frozen=True)
class LikertItem:
    id: str = setting(custom=True, help="1-48 letters, digits, `_ - .`")
    text: str = setting(help="the statement or question")
    scale_min: int = setting(1, low=0, high=10, help="lowest score")
    scale_max: int = setting(7, low=1, high=11, help="highest score (above scale_min)")
    anchors: tuple[str, ...] = setting(("strongly disagree", "strongly agree"),
                                       help="labels of the low and the high end")


@dataclass(frozen=True)
class Instrument:
    id: str
    title: str
    items: tuple[LikertItem, ...]


@dataclass(frozen=True)
class Vignette:
    id: str = setting(custom=True, help="1-48 letters, digits, `_ - .`")
    target_arm: str = setting(choices=ARMS, help="the way of using AI the vignette describes")
    text: str = setting(help="what the rater reads")


@dataclass(frozen=True)
class PeerRatingSpec:
    kind: str = setting("none", choices=("none", "vignette", "peer_record"),
                        help="what raters rate (`vignette` when the table is present)")
    per_rater: int = setting(1, low=1, high=20, help="ratings each participant gives")
    assignment: str = setting("balanced", choices=("balanced", "by_arm"),
                              help="vignettes: `by_arm` (the rater's own arm, Yang/Dai) or `balanced`")
    fallback: str = setting("vignette", choices=("vignette", "pilot"),
                            help="peer records before enough exist: `vignette` or `pilot`")
    show_correctness: bool = setting(False, help="tell raters whether the rated reading was right")
    items: tuple[LikertItem, ...] = setting((), custom=True, help="`[[peer_rating.items]]`: the rating items")
    vignettes: tuple[Vignette, ...] = setting((), custom=True, help="`[[peer_rating.vignettes]]`")


@dataclass(frozen=True)
class TrialSpec:
    # Either way the export gives initial_score / final_score as the probability of the positive class.
    score: str = setting("confidence", choices=SCORE_QUESTIONS,
                         help="what the slider asks: `confidence` in one's own answer, or `probability` of the "
                              "finding (the rating an ROC needs)")
    # Off by default: feedback teaches, and whether a study may teach before measuring is the designer's call.
    practice_feedback: bool = setting(False, help="after each practice case, say what the image shows")


@dataclass(frozen=True)
class AnalysisSpec:
    """The pre-declared estimand: one primary metric, its arm contrast (a - b, a risk difference on the
    probability scale), the secondary family Holm-corrected together, and optionally the difference
    the study was sized for. Empty: the analysis uses its defaults and says so."""

    primary: str = setting("", choices=RATE_METRICS, help="the primary metric")
    contrast: tuple[str, ...] = setting((), custom=True, help="`\"a - b\"`: two of the design's arms, or two levels "
                                                              "of `analysis.factor`")
    factor: str = setting("", since=2, custom=True,
                          help="designs with [factors]: the factor whose levels `contrast` compares")
    interaction: tuple[str, ...] = setting((), since=2, custom=True,
                                           help="designs with [factors]: `\"A x B\"` makes the primary estimand the "
                                                "interaction of two factors (their first two levels), instead of "
                                                "`factor` and `contrast`")
    secondary: tuple[str, ...] = setting((), custom=True, help="other metrics, Holm-adjusted together")
    effect: float | None = setting(None, custom=True, help="the risk difference the study is sized to detect")
    # Online readers may leave the tab mid-trial; the report re-estimates the primary estimand without
    # trials hidden for more than this share of their reading time (a sensitivity analysis).
    max_hidden_share: float = setting(0.1, low=0.0, high=1.0, since=3,
                                      help="trials whose tab was hidden for more than this share of their reading "
                                           "time are left out in a sensitivity analysis of the primary estimand")


@dataclass(frozen=True)
class EnrolmentSpec:
    # Personal invitation links (`xai-lab invite`) are not counted: each was made for one person.
    max_enrolments: int | None = setting(None, low=1, high=MAX_ENROLMENTS,
                                         help="most participants the shared code link may enrol; unset: no cap")


# Panels' URL parameters; the first names the panel's participant id (one id is one participant).
PANEL_PRESETS: dict[str, tuple[str, ...]] = {
    "prolific": ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID"),
    "mturk": ("workerId", "assignmentId", "hitId"),
    "sona": ("id",),  # SONA Systems passes its survey code as ?id=%SURVEY_CODE%
}
PANELS = ("none", *PANEL_PRESETS, "custom")


@dataclass(frozen=True)
class RecruitmentSpec:
    """Where participants come from: a recruitment panel's URL parameters to capture, where the
    participant goes when they finish (with the completion code) and when they decline."""

    panel: str = setting("none", choices=PANELS, since=3, custom=True,
                         help="`prolific`, `mturk`, `sona` (their URL parameters), `custom` (name them in "
                              "`parameters`) or `none`")
    parameters: tuple[str, ...] = setting((), since=3, custom=True,
                                          help="the URL parameters to capture; the first is the panel's participant "
                                               "id (default: the panel's own, e.g. PROLIFIC_PID, STUDY_ID, "
                                               "SESSION_ID)")
    completion_url: str = setting("", since=3, custom=True,
                                  help="where the last page sends a participant who finished; `{code}` is replaced "
                                       "by `completion_code`")
    completion_code: str = setting("", since=3, custom=True, help="the panel's completion code")
    screenout_url: str = setting("", since=3, custom=True,
                                 help="where a participant who declines consent (or withdraws) is sent, e.g. the "
                                      "panel's \"return your submission\" page")

    @property
    def id_parameter(self) -> str | None:
        return self.parameters[0] if self.parameters else None

    def completion_link(self) -> str:
        return self.completion_url.replace("{code}", self.completion_code)


# The declared sections, by their TOML table (the docs table and `xai-lab study settings` list these).
DESIGN_SECTIONS: dict[str, type] = {
    "data": DataSpec, "cases": CaseSpec, "allocation": AllocationSpec, "explanation": ExplanationSpec,
    "attention": AttentionSpec, "peer_rating": PeerRatingSpec, "peer_rating.items": LikertItem,
    "questionnaire.items": LikertItem, "peer_rating.vignettes": Vignette, "trials": TrialSpec,
    "analysis": AnalysisSpec, "enrolment": EnrolmentSpec, "factors.NAME": Factor, "recruitment": RecruitmentSpec,
}


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
    # Conditions as crossed factors (xai_lab.study.factors); empty: the arms are the one between factor.
    factors: tuple[Factor, ...] = setting((), since=2, custom=True,
                                          help="`[factors.NAME]` tables: what participants see, as crossed factors")
    language: str = setting("en", choices=LANGUAGES, since=3, custom=True,
                            help="the language of the lab's own screens, buttons and messages: `en`, `fr` or `de` "
                                 "(write the design's texts in it too)")
    recruitment: RecruitmentSpec = setting(RecruitmentSpec(), since=3, custom=True,
                                           help="`[recruitment]`: a panel's URL parameters and redirects")
    source: str = ""  # the file it came from

    @property
    def consent_version(self) -> str:
        """The consent text's version: the first 12 hex digits of its SHA-256. A changed text is a new
        version, which participants already taking part agree to on their next page (docs/running.md)."""
        return consent_version(self.consent_text)

    @property
    def has_trials(self) -> bool:
        return self.cases.n > 0

    @property
    def orders(self) -> tuple[str, ...]:
        """What allocation assigns: an arm (between) or an arm order such as 'verify>rely' (within)."""
        if self.factors:
            return allocation_units(self.factors)
        if self.allocation.kind == "between":
            return self.arms
        return tuple(ORDER_SEPARATOR.join(order) for order in _rotations(self.arms))

    def first_workflow(self, assignment: str) -> str:
        """The workflow (arm) the participant's first trials are read under, which their instructions
        and practice follow: the arm, the first of an order, or a factor design's workflow."""
        if not self.factors:
            return order_arms(assignment)[0]
        between, _ = read_unit(self.factors, assignment)
        workflow = next((f for f in self.factors if f.sets == "workflow"), None)
        return between[workflow.name] if workflow is not None else self.arms[0]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "schema": DESIGN_SCHEMA}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> StudyDesign:
        """The design `to_json` wrote (as the database holds it); sections and settings added later take
        their declared defaults. A design stored by a newer release is refused, not misread."""
        schema = raw.get("schema", 1)
        if schema > DESIGN_SCHEMA:
            raise ConfigError(f"study {raw.get('id')!r} was registered by a newer xai-lab (design schema {schema}; "
                              f"this one reads up to {DESIGN_SCHEMA}); upgrade xai-lab to serve or analyse it")
        content = {key: value for key, value in raw.items() if key != "schema"}
        # Stored before looks could be set per arm: the default look for every arm that sees AI.
        content["explanation"] = {"look": default_looks(tuple(raw["arms"])), **raw["explanation"]}
        return from_record(cls, content)

    def fingerprint(self) -> str:
        """SHA-256 of what defines the experiment (not its file name): a changed design is a new design.

        Settings added after schema 1 count only when they differ from their default (`Setting.since`),
        so an upgrade that adds one leaves every registered study's fingerprint as it was
        (tests/test_upgrade.py pins the shipped designs'). The exceptions below are schema 1's own
        later additions, frozen as they were released: never edit them, declare `since` instead.
        """
        content = without_later_defaults(StudyDesign, {k: v for k, v in asdict(self).items() if k != "source"})
        for key, section in (("enrolment", EnrolmentSpec), ("trials", TrialSpec), ("analysis", AnalysisSpec)):
            # compared as the fingerprint sees them: a later setting in these sections is already gone
            if content.get(key) == without_later_defaults(section, asdict(section())):
                del content[key]
        explanation = content["explanation"]
        if explanation["look"] == default_looks(self.arms) and explanation["normal_advice"] == "withhold":
            del explanation["look"], explanation["normal_advice"]
        if not explanation["parameters"]:
            del explanation["parameters"]
        if content["data"] and content["data"]["min_val_auroc"] is None:
            del content["data"]["min_val_auroc"]
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def consent_version(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# What may change in a registered study that already has participants (an amendment, recorded and
# reported): the consent text (after an ethics amendment), the analysis plan (a deviation the report
# flags against the preregistration) and the recruitment redirects. Everything else changes what
# participants see: a new study id.
# The panel's redirects may be corrected too (a typo in the completion host sends nobody back).
AMENDABLE = ("consent_text", "analysis", "recruitment")


def without_amendable(design: StudyDesign) -> StudyDesign:
    return replace(design, consent_text="", analysis=AnalysisSpec(), recruitment=RecruitmentSpec())


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
