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

import json
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from scipy.special import expit, logit

from xai_lab.errors import ConfigError
from xai_lab.explain.cache import CachedPrediction
from xai_lab.explain.request import ExplanationRequest
from xai_lab.private_files import write_private_text
from xai_lab.study.design import StudyDesign


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

    def explanation_request(self, case: StudyCase) -> ExplanationRequest:
        """The map of this case: the study's request, explaining the shown label when it was planted."""
        base = ExplanationRequest.from_json(self.explanation) if self.explanation \
            else ExplanationRequest.create(self.explanation_method)
        return base.for_target(case.target if case.advice_source == "planted" else None)

    def to_json(self) -> dict[str, Any]:
        # unset presentation fields are left out, so a case set prepared earlier compares equal
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CaseSet:
        def rows(key: str) -> tuple[StudyCase, ...]:
            return tuple(StudyCase(**row) for row in raw[key])
        return cls(**{**raw, "class_names": tuple(raw["class_names"]), "cases": rows("cases"),
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
    mirrored = round(float(expit(2 * logit(t) - logit(p))), 4)
    step = -1e-4 if p_finding >= threshold else 1e-4
    while (mirrored >= threshold) == (p_finding >= threshold):  # at the threshold itself, or rounded onto it
        mirrored = round(mirrored + step, 4)
    return mirrored
