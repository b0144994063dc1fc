"""The case set of a study: which images participants see, and what the AI advises on each.

`select_cases` draws, reproducibly from the study seed, `cases.n` main cases with the design's
share of AI-wrong cases and of positive cases, plus practice cases (AI right, so practice does
not teach distrust) and attention-check cases. AI advice is the model's real, calibrated
decision; an AI-wrong case is one of the model's real errors. Only when the design says
`advice = "planted"` and the model has too few errors is wrong advice planted on a case the
model got right (Gaube et al. 2021): the label is switched to the most probable wrong class,
the overlay explains the planted label, and the case is flagged `advice_source = "planted"`.

Advice never contradicts its own number. `ai_confidence` is the probability of the label shown.
For two classes the screen shows the probability of the finding with the model's decision
threshold, and a planted label's probability is the model's own mirrored across that threshold
on the logit scale (as far on the planted side as the real decision was on its side), so
"lesion" always comes with a probability at or above the threshold and "normal" below it. With
more classes the planted label gets the model's confidence in its own decision, which makes it
the most probable label shown.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from xai_lab.errors import ConfigError
from xai_lab.explain.cache import CachedPrediction
from xai_lab.explain.request import ExplanationRequest
from xai_lab.paths import lab_home
from xai_lab.private_files import write_private_text
from xai_lab.study.design import StudyDesign
from xai_lab.study.factors import OTHER_MODEL_MAP, OWN_MAP, RANDOMISED_MAP

RANDOMISED_SOURCE = "randomised:0"  # the request source of a fully randomised copy's map (seed 0)

# The version of the stored case set's shape; raised with any new field, which must default to None.
CASE_SET_SCHEMA = 2  # 2: advice_by_model, other_models (conditions as factors)


@dataclass(frozen=True)
class StudyCase:
    case_id: str
    true_label: str
    ai_label: str
    ai_confidence: float  # 0-1, calibrated probability shown with the advice
    ai_correct: bool
    advice_source: str  # "model" or "planted"
    target: int  # class index the overlay explains (the AI label)


@dataclass(frozen=True)
class CaseSet:
    study_id: str
    dataset: str
    dataset_sha256: str
    model: str
    model_sha256: str
    class_names: tuple[str, ...]
    explanation_method: str
    cases: tuple[StudyCase, ...]
    practice: tuple[StudyCase, ...]
    attention: tuple[StudyCase, ...]
    # How the advice is presented, fixed when the study is prepared. None: prepared by an earlier
    # version, whose registered participants keep what they saw (full heat map, no threshold).
    decision_threshold: float | None = None  # the model's threshold on P(finding), two classes only
    overlay_looks: dict[str, str] | None = None  # arm -> look (explain/looks.py)
    normal_advice: str | None = None  # "withhold" or "explain" (StudyDesign.explanation)
    # Which maps: the explanation request (method, every parameter, seed) and each shown case's
    # cache key. None: prepared by an earlier version, whose maps used the method's defaults.
    explanation: dict[str, Any] | None = None
    overlay_keys: dict[str, str] | None = None  # case id -> `ExplanationRequest.key()` of its map
    # Whether the model card's test ECE supports telling readers the probabilities are calibrated
    # (`xai_lab.model.calibration.calibration_claim`). None: prepared earlier, shown as it was then.
    calibration_claim: bool | None = None
    # Designs whose factors name other models (an advice_model factor, maps of another model): each such
    # model's own advice on every main and practice case (model -> case id -> advice), and its provenance
    # (model -> sha256, threshold, calibration_claim). None: one model advises and explains.
    advice_by_model: dict[str, dict[str, StudyCase]] | None = None
    other_models: dict[str, dict[str, Any]] | None = None

    def advice(self, case: StudyCase, model: str | None) -> StudyCase:
        """What `model` advises on the case: the case itself for the study's model."""
        if model is None or model == self.model:
            return case
        return self.advice_by_model[model][case.case_id]

    def threshold(self, model: str | None) -> float | None:
        if model is None or model == self.model:
            return self.decision_threshold
        return self.other_models[model].get("threshold")

    def calibrated(self, model: str | None) -> bool | None:
        if model is None or model == self.model:
            return self.calibration_claim
        return self.other_models[model].get("calibration_claim")

    def map_request(self, case: StudyCase, model: str | None, map_source: str) -> tuple[str, ExplanationRequest]:
        """(the model whose cache holds it, the request) of the map shown with `model`'s advice on the case:
        the advising model's own map, a randomised copy's (`randomised`) or another model's (`model:NAME`),
        the last two explaining the advised class."""
        advising = model or self.model
        if advising == self.model and map_source == OWN_MAP:
            return self.model, self.explanation_request(case)
        advice = self.advice(case, model)
        base = self.explanation_request(case).for_target(advice.target)
        if map_source == OWN_MAP:
            return advising, base.for_target(None)  # the advising model's decision is its advice
        if map_source == RANDOMISED_MAP:
            return advising, base.with_source(RANDOMISED_SOURCE)
        return map_source.removeprefix(OTHER_MODEL_MAP), base

    def explanation_request(self, case: StudyCase) -> ExplanationRequest:
        """The map of this case: the study's request, explaining the shown label when it was planted."""
        base = ExplanationRequest.from_json(self.explanation) if self.explanation \
            else ExplanationRequest.create(self.explanation_method)
        return base.for_target(case.target if case.advice_source == "planted" else None)

    def to_json(self) -> dict[str, Any]:
        return {**self._content(), "schema": CASE_SET_SCHEMA}

    def _content(self) -> dict[str, Any]:
        # Unset fields are left out: a field added later defaults to None, so a case set prepared
        # before it existed has the same content, and the same fingerprint, after an upgrade.
        return {key: value for key, value in asdict(self).items() if value is not None}

    def fingerprint(self) -> str:
        """SHA-256 of what participants are shown: registration compares these, not the stored JSON, so
        an upgrade that adds a field (at None) never refuses a running study."""
        return hashlib.sha256(json.dumps(self._content(), sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CaseSet:
        schema = raw.get("schema", 1)
        if schema > CASE_SET_SCHEMA:
            raise ConfigError(f"the case set of study {raw.get('study_id')!r} was prepared by a newer xai-lab (case "
                              f"set schema {schema}; this one reads up to {CASE_SET_SCHEMA}); upgrade xai-lab")

        def rows(key: str) -> tuple[StudyCase, ...]:
            return tuple(StudyCase(**row) for row in raw[key])
        content = {key: value for key, value in raw.items() if key != "schema"}
        if raw.get("advice_by_model"):
            content["advice_by_model"] = {model: {case_id: StudyCase(**row) for case_id, row in cases.items()}
                                          for model, cases in raw["advice_by_model"].items()}
        return cls(**{**content, "class_names": tuple(raw["class_names"]), "cases": rows("cases"),
                      "practice": rows("practice"), "attention": rows("attention")})

    def save(self, path: Path) -> None:
        # atomic (a reader sees old or new) and 0600: the case set names which cases the AI gets wrong
        write_private_text(path, json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: Path, design_file: str = "FILE") -> CaseSet:
        try:
            return cls.from_json(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise ConfigError(f"the study has not been prepared ({path} is missing); run "
                              f"'xai-lab study prepare {design_file}' first") from None
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"the prepared case set {path} is damaged ({error}); run "
                              f"'xai-lab study prepare {design_file}' again") from None


def empty_case_set(design: StudyDesign) -> CaseSet:
    """Designs without images (e.g. vignette-only studies)."""
    return CaseSet(design.id, "", "", "", "", (), "", (), (), ())


def prepared_path(study_id: str) -> Path:
    return lab_home() / "prepared" / study_id / "case_set.json"


def load_case_set(design: StudyDesign) -> CaseSet:
    if not design.has_trials and not design.cases.practice:
        return empty_case_set(design)
    case_set = CaseSet.load(prepared_path(design.id), design.source or "FILE")
    if case_set.study_id != design.id:
        raise ConfigError(f"{prepared_path(design.id)} belongs to study {case_set.study_id!r}; run "
                          f"'xai-lab study prepare {design.source}' again")
    return case_set


def select_cases(design: StudyDesign, predictions: list[CachedPrediction], class_names: list[str],
                 request: ExplanationRequest, provenance: dict[str, str], threshold: float | None = None,
                 calibration_claim: bool | None = None) -> CaseSet:
    """Choose main, practice and attention cases from the model's predictions on the split.

    threshold: the model's decision threshold on P(finding) for two classes (model card), else None.
    calibration_claim: whether the card's test calibration supports the screen's calibration sentence.
    """
    spec = design.cases
    rng = random.Random(f"{design.seed}:cases")
    pool = sorted(predictions, key=lambda p: p.case_id)
    rng.shuffle(pool)
    n_wrong = round(spec.n * spec.ai_wrong_share)
    n_positive = round(spec.n * spec.positive_share)
    positive = len(class_names) - 1  # the finding class: the last name (e.g. normal, lesion)
    errors = [p for p in pool if p.predicted != p.label]
    correct = [p for p in pool if p.predicted == p.label]
    wrong = _take_balanced(errors, n_wrong, spec.positive_share, positive)
    planted: list[CachedPrediction] = []
    if len(wrong) < n_wrong:
        if spec.imported_advice:
            raise ConfigError(f"{design.source}: cases.ai_wrong_share asks for {n_wrong} AI-wrong cases but the "
                              f"vendor's advice is wrong on only {len(errors)} {spec.split} cases; lower "
                              "cases.ai_wrong_share or cases.n (a vendor's advice is never planted)")
        if spec.advice != "planted":
            raise ConfigError(
                f"{design.source}: cases.ai_wrong_share asks for {n_wrong} AI-wrong cases but the model makes only "
                f"{len(errors)} errors on the {spec.split} split; lower cases.ai_wrong_share or cases.n, or allow "
                "planted wrong advice with cases.advice = \"planted\"")
        planted = _take_balanced(correct, n_wrong - len(wrong), spec.positive_share, positive)
        correct = [p for p in correct if p not in planted]
    chosen_wrong = wrong + planted
    wrong_positive = sum(p.label == positive for p in chosen_wrong)
    right = _take_exact(correct, spec.n - len(chosen_wrong), n_positive - wrong_positive, positive, design)
    rest = [p for p in correct if p not in right]
    practice, rest = rest[:spec.practice], rest[spec.practice:]
    attention = (rest + [p for p in errors if p not in wrong])[:design.attention.count]
    if len(practice) < spec.practice or len(attention) < design.attention.count:
        raise ConfigError(f"{design.source}: the {spec.split} split has too few cases for {spec.n} trials, "
                          f"{spec.practice} practice and {design.attention.count} attention checks; lower them")
    threshold = threshold if len(class_names) == 2 else None
    main = [_advice(p, class_names, threshold, planted=p in planted) for p in wrong + planted + right]
    rng.shuffle(main)
    shown = [*main, *(_advice(p, class_names, threshold) for p in practice)]
    case_set = CaseSet(design.id, provenance["dataset"], provenance["dataset_sha256"], provenance["model"],
                       provenance["model_sha256"], tuple(class_names), request.method, tuple(main),
                       tuple(shown[len(main):]), tuple(_advice(p, class_names, threshold) for p in attention),
                       decision_threshold=threshold, overlay_looks=dict(design.explanation.look),
                       normal_advice=design.explanation.normal_advice, explanation=request.to_json(),
                       calibration_claim=calibration_claim)
    keys = {case.case_id: case_set.explanation_request(case).key() for case in shown}
    return replace(case_set, overlay_keys=keys)


def _take_balanced(candidates: list[CachedPrediction], n: int, positive_share: float,
                   positive: int) -> list[CachedPrediction]:
    """Up to n cases with about the design's share of positives; the other class fills a shortfall."""
    want_positive = round(n * positive_share)
    positives = [p for p in candidates if p.label == positive]
    negatives = [p for p in candidates if p.label != positive]
    take_positive = min(len(positives), max(want_positive, n - len(negatives)))
    return positives[:take_positive] + negatives[:max(0, min(len(negatives), n - take_positive))]


def _take_exact(candidates: list[CachedPrediction], n: int, n_positive: int, positive: int,
                design: StudyDesign) -> list[CachedPrediction]:
    n_positive = min(max(n_positive, 0), n)
    positives = [p for p in candidates if p.label == positive][:n_positive]
    negatives = [p for p in candidates if p.label != positive][:n - n_positive]
    if len(positives) + len(negatives) < n:
        raise ConfigError(f"{design.source}: the {design.cases.split} split has too few cases the model gets right "
                          f"for cases.n = {design.cases.n} at positive_share {design.cases.positive_share}; "
                          "lower cases.n")
    return positives + negatives


def model_advice(prediction: CachedPrediction, class_names: list[str], threshold: float | None) -> StudyCase:
    """A model's own advice on a case (its calibrated decision; never planted)."""
    return _advice(prediction, class_names, threshold if len(class_names) == 2 else None)


def _advice(prediction: CachedPrediction, class_names: list[str], threshold: float | None,
            planted: bool = False) -> StudyCase:
    confidence = prediction.confidence
    shown = prediction.predicted
    if planted:
        # the most probable class other than the model's own decision
        ranked = sorted(range(len(class_names)), key=lambda c: -prediction.probabilities[c])
        shown = next(c for c in ranked if c != prediction.predicted)
        if threshold is not None:
            finding = mirrored_probability(prediction.probabilities[1], threshold)
            confidence = finding if shown == 1 else 1 - finding
    return StudyCase(case_id=prediction.case_id, true_label=class_names[prediction.label],
                     ai_label=class_names[shown], ai_confidence=round(float(confidence), 4),
                     ai_correct=shown == prediction.label, advice_source="planted" if planted else "model",
                     target=shown)


def mirrored_probability(p_finding: float, threshold: float) -> float:
    """P(finding) reflected across the threshold on the logit scale, strictly on the other side
    after rounding to the 4 decimals a case set keeps."""
    p, t = (min(max(value, 1e-6), 1 - 1e-6) for value in (p_finding, threshold))  # finite logits
    mirrored = round(_expit(2 * _logit(t) - _logit(p)), 4)
    step = -1e-4 if p_finding >= threshold else 1e-4
    while (mirrored >= threshold) == (p_finding >= threshold):  # at the threshold itself, or rounded onto it
        mirrored = round(mirrored + step, 4)
    return mirrored


# Two scalar formulas from the standard library rather than scipy.special: this module is on every served
# page's import path, and scipy.special alone took 0.45 s to import.
def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _expit(x: float) -> float:
    return 1 / (1 + math.exp(-x))
