"""Export-shaped studies with planted effects: the truth that the analysis must recover.

`simulate.py` sends simulated clinicians through the real service, one database transaction per
answer: right for testing the engine, far too slow for power analysis (200 studies x several
sample sizes). This module draws the same kind of data straight into the export's tables
(`export.COLUMNS`), with effects stated on the scale the analysis reports, so a test can check
that the estimates cover the planted values.

The behavioural model, per participant i and trial:
- an unaided read is right with probability skill_i ~ Beta (mean `skill`), so participants differ
  and trials cluster within them, as in real readers;
- where the read differs from the AI's label, the participant takes the AI's label with a
  probability that depends on arm and on whether the AI is right. Those two switch probabilities
  are solved from the planted over-reliance P(final = AI | AI wrong) and under-reliance
  P(final != AI | AI right), so the population values are exactly the planted ones;
- verify records the unaided read as the initial answer; rely records only the final one;
  control sees no AI;
- factorial designs (`[factors]`): participants per allocation unit, each trial at the levels the
  lab's schedule gives it (`factors.trial_schedule`); an over- or under-reliance keyed
  `factor.level` (e.g. `explanation.contour`) holds on trials at that level, one keyed
  `explanation.contour&model.standard` on trials at both (an interaction; the key naming most levels
  wins), else the arm's; the case-by-arm shift is drawn per case and condition;
- a peer rating is round(mean[target arm] + rater + target + noise), clipped to the scale
  (no target term for vignettes: the vignette is the condition).
  Rounding and clipping move the observed mean off the latent one: `expected_rating` gives
  the observed-scale truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from math import erf, sqrt

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from xai_lab.errors import ConfigError
from xai_lab.study.design import StudyDesign, order_arms
from xai_lab.study.export import COLUMNS
from xai_lab.study.factors import trial_schedule
from xai_lab.study.flow import trial_arms

CLASSES = ("normal", "abnormal")
AI_ARMS = ("verify", "rely", "on_demand")  # on_demand: planted readers always ask


@dataclass(frozen=True)
class PlantedEffects:
    """The population truth of a simulated study, on the scales the analysis reports."""

    over_reliance: dict[str, float] = field(default_factory=lambda: {"verify": 0.25, "rely": 0.45})
    under_reliance: dict[str, float] = field(default_factory=lambda: {"verify": 0.10, "rely": 0.05})
    # Yang, Dai et al. 2025: clinical skill 1-7 by how the physician used AI.
    competence: dict[str, float] = field(default_factory=lambda: {"control": 5.9, "rely": 3.8, "verify": 5.0})
    skill: float = 0.8  # mean chance that an unaided read is right
    skill_concentration: float = 30.0  # Beta(a, b) with a + b = this: higher means readers differ less
    rating_sd: float = 1.2  # within-rater noise of one rating
    rater_sd: float = 0.4  # raters differ in leniency
    target_sd: float = 0.2  # rated clinicians (or vignettes) differ beyond their use of AI
    # Crossover designs: added to over-reliance in the second period (habituation to the AI), so the
    # arm contrast is unchanged in a balanced design and the period effect is exactly this.
    period_effect: float = 0.0
    # Case-by-arm heterogeneity: SD on the logit scale of a per case x arm shift of the chance of
    # taking the AI's label when it differs. With no arm effect it leaves every arm's population
    # value equal (shifts are drawn alike per arm) but makes cases random in the arm contrast.
    case_arm_sd: float = 0.0

    def __post_init__(self) -> None:
        if not 0.5 <= self.skill < 1.0:
            raise ConfigError(f"skill must be from 0.5 to below 1, got {self.skill}")
        spreads = {"case_arm_sd": self.case_arm_sd, "rating_sd": self.rating_sd, "rater_sd": self.rater_sd,
                   "target_sd": self.target_sd}
        for name, value in spreads.items():
            if not 0.0 <= value < float("inf"):
                raise ConfigError(f"{name} is a standard deviation: give 0 or more, got {value}")
        if not self.skill_concentration > 0:
            raise ConfigError(f"skill_concentration must be above 0, got {self.skill_concentration}")
        for arm, value in self.over_reliance.items():
            if not 1.0 - self.skill <= value <= 1.0:
                raise ConfigError(f"over_reliance for {arm} ({value}) must be from 1 - skill ({1 - self.skill:.2f}) "
                                  "to 1: a reader who is wrong already agrees with wrong advice; lower skill or "
                                  "raise over_reliance")
        if not all(0.0 <= value + self.period_effect <= 1.0 for value in self.over_reliance.values()):
            raise ConfigError(f"over_reliance + period_effect ({self.period_effect}) must stay within 0-1 for every "
                              "arm; lower period_effect")
        for arm, value in self.under_reliance.items():
            if not 0.0 <= value <= 1.0 - self.skill:
                raise ConfigError(f"under_reliance for {arm} ({value}) must be from 0 to 1 - skill "
                                  f"({1 - self.skill:.2f}): only readers who disagree with right advice can "
                                  "reject it; raise skill's complement or lower under_reliance")

    def switch_probabilities(self, arm: str, period: int = 1,
                             levels: dict[str, str] | None = None) -> tuple[float, float]:
        """(P(take AI | disagree, AI wrong), P(take AI | disagree, AI right)) for one arm (and period), or
        for a factorial design's trial at these factor levels (keys `factor.level`)."""
        over = _at_levels(self.over_reliance, levels, self.over_reliance.get(arm, 1.0 - self.skill)) + \
            (self.period_effect if period == 2 else 0.0)
        under = _at_levels(self.under_reliance, levels, self.under_reliance.get(arm, 0.0))
        take_wrong = (over - (1.0 - self.skill)) / self.skill
        take_right = 1.0 - under / (1.0 - self.skill)
        return take_wrong, take_right


def _at_levels(values: dict[str, float], levels: dict[str, str] | None, otherwise: float) -> float:
    """The planted value of a trial at these factor levels: the key naming the most of its levels wins
    (`explanation.contour&model.standard` over `explanation.contour`: an interaction), else `otherwise`."""
    held = {f"{factor}.{level}" for factor, level in (levels or {}).items()}
    matching = [(len(key.split("&")), value) for key, value in values.items()
                if "." in key and set(key.split("&")) <= held]
    return max(matching, key=lambda match: match[0])[1] if matching else otherwise


def expected_rating(mean: float, sd: float, scale_min: int, scale_max: int) -> float:
    """E[clip(round(X), min, max)] for X ~ Normal(mean, sd): the observed mean of a planted latent one."""
    def below(x: float) -> float:
        return 0.5 * (1.0 + erf((x - mean) / (sd * sqrt(2.0))))

    total = 0.0
    for score in range(scale_min, scale_max + 1):
        low = -np.inf if score == scale_min else score - 0.5
        high = np.inf if score == scale_max else score + 0.5
        total += score * ((below(high) if np.isfinite(high) else 1.0) - (below(low) if np.isfinite(low) else 0.0))
    return total


@dataclass
class SimulatedExport:
    participants: pd.DataFrame
    trials: pd.DataFrame
    ratings: pd.DataFrame
    questionnaire: pd.DataFrame

    def write(self, directory) -> None:
        """As `xai-lab export` writes them (CSV), so the analysis reads them through its own loader."""
        directory.mkdir(parents=True, exist_ok=True)
        for name in ("participants", "trials", "ratings", "questionnaire"):
            getattr(self, name).to_csv(directory / f"{name}.csv", index=False)


def simulate_export(design: StudyDesign, effects: PlantedEffects, per_arm: int, seed: int = 0) -> SimulatedExport:
    """`per_arm` completed participants per arm (between designs) or per arm order (within designs:
    each reads the first run of cases under the order's first arm, the rest under the second)."""
    if per_arm < 2:
        raise ConfigError(f"participants per arm must be at least 2, got {per_arm}")
    rng = np.random.default_rng(seed)
    # a factorial design: per_arm participants per between cell, spread evenly over its within rotations
    per_unit = -(-per_arm * len(_between_cells(design)) // len(design.orders)) if design.factors else per_arm
    arms = [arm for arm in design.orders for _ in range(per_unit)]
    people = pd.DataFrame({"participant_id": [f"p{i:05d}" for i in range(len(arms))], "arm": arms})
    people["role"] = rng.choice(["physician", "nurse"], size=len(people))
    cases = _cases(design, rng)
    trials = _trials(design, effects, people, cases, rng) if design.has_trials else _empty("trials")
    ratings = _ratings(design, effects, people, trials, rng)
    return SimulatedExport(_participants(design, people), trials, ratings, _empty("questionnaire"))


def _between_cells(design: StudyDesign) -> set[str]:
    return {unit.split("@")[0] for unit in design.orders}


def _cases(design: StudyDesign, rng: np.random.Generator) -> pd.DataFrame:
    n = design.cases.n
    n_wrong = int(round(design.cases.ai_wrong_share * n))
    truth = rng.permutation(np.arange(n) % 2)
    ai_wrong = rng.permutation(np.arange(n) < n_wrong)
    ai = np.where(ai_wrong, 1 - truth, truth)
    return pd.DataFrame({"case_id": [f"case-{k:03d}" for k in range(n)], "truth": truth, "ai": ai,
                         "ai_confidence": np.round(rng.uniform(0.6, 0.98, n), 3)})


def _trials(design: StudyDesign, effects: PlantedEffects, people: pd.DataFrame, cases: pd.DataFrame,
            rng: np.random.Generator) -> pd.DataFrame:
    a = effects.skill * effects.skill_concentration
    skills = rng.beta(a, effects.skill_concentration - a, size=len(people))
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    # case-by-condition shifts, drawn alike for every condition (arm, or arm and factor levels) on first use;
    # arm designs draw them up front in the order earlier releases did, so their seeds give the same data
    shift_of: dict[tuple, dict[str, float]] = {} if design.factors else {
        (arm,): {case: rng.normal(0, effects.case_arm_sd) if effects.case_arm_sd else 0.0 for case in cases["case_id"]}
        for arm in ("verify", "rely")}
    rows = []
    for person, skill in zip(people.itertuples(), skills, strict=True):
        order = rng.permutation(len(cases))
        arms_by_trial = trial_arms(design, person.arm)
        levels_by_trial = [levels for _, levels in trial_schedule(design.factors, person.arm, len(cases),
                                                                   list(order))] if design.factors else None
        if levels_by_trial is not None:
            order = np.array([case for case, _ in trial_schedule(design.factors, person.arm, len(cases), list(order))])
        for index, case in enumerate(cases.iloc[order].itertuples()):
            arm = arms_by_trial[index]
            levels = levels_by_trial[index] if levels_by_trial is not None else {}
            period = 1 if design.factors else order_arms(person.arm).index(arm) + 1
            take_wrong, take_right = effects.switch_probabilities(arm, period, levels)
            own = case.truth if rng.random() < skill else 1 - case.truth
            final = own
            has_ai = arm in AI_ARMS
            take = take_right if case.ai == case.truth else take_wrong
            if has_ai and own != case.ai and rng.random() < _shifted(take, _shift(shift_of, (arm, *sorted(
                    levels.items())), case.case_id, cases, effects, rng)):
                final = case.ai
            row = _trial_row(design, person._replace(arm=arm), index, case, own, final, has_ai, start, rng)
            rows.append({**row, "conditions": levels or None, **{f"factor_{k}": v for k, v in levels.items()}})
    columns = list(COLUMNS["trials"]) + [f"factor_{f.name}" for f in design.factors]
    return pd.DataFrame(rows, columns=columns).convert_dtypes()


def _shift(shift_of: dict[tuple, dict[str, float]], condition: tuple, case_id: str, cases: pd.DataFrame,
           effects: PlantedEffects, rng: np.random.Generator) -> float:
    """The case x condition logit shift, the condition's shifts drawn when it is first met."""
    if condition not in shift_of:
        shift_of[condition] = {c: rng.normal(0, effects.case_arm_sd) if effects.case_arm_sd else 0.0
                               for c in cases["case_id"]}
    return shift_of[condition][case_id]


def _shifted(probability: float, logit_shift: float) -> float:
    """A probability moved by `logit_shift` on the logit scale (0 and 1 stay put)."""
    return probability if logit_shift == 0.0 else float(expit(logit(probability) + logit_shift))


def _trial_row(design, person, index, case, own, final, has_ai, start, rng) -> dict:
    verify = person.arm == "verify"
    shown = start + timedelta(minutes=index)
    initial_confidence = _confidence(rng, own == case.truth) if verify else None
    final_confidence = _confidence(rng, final == case.truth)
    rt_final = int(rng.lognormal(np.log(4000 if verify else 6000), 0.5))
    return {
        "study_id": design.id, "participant_id": person.participant_id, "arm": person.arm, "trial_index": index,
        "case_id": case.case_id, "true_label": CLASSES[case.truth],
        "ai_label": CLASSES[case.ai] if has_ai else None,
        "ai_confidence": case.ai_confidence if has_ai else None,
        "ai_correct": bool(case.ai == case.truth) if has_ai else None,
        "advice_source": "model", "explanation_method": "gradcam" if has_ai else None,
        "overlay_shown": True if has_ai else None,
        "initial_label": CLASSES[own] if verify else None,
        "initial_confidence": initial_confidence,
        "final_label": CLASSES[final], "final_confidence": final_confidence,
        "final_correct": bool(final == case.truth),
        "rt_initial_ms": int(rng.lognormal(np.log(6000), 0.5)) if verify else None, "rt_final_ms": rt_final,
        "started_at": shown.isoformat(), "completed_at": (shown + timedelta(milliseconds=rt_final)).isoformat(),
        "overlay_toggles": int(rng.poisson(0.3)) if has_ai else 0,
        "record_id": f"r-{person.participant_id}-{index}",
        # as the export derives them: P(abnormal) = confidence for an abnormal call, else 100 - confidence
        "initial_score": (initial_confidence if own == 1 else 100 - initial_confidence) if verify else None,
        "final_score": final_confidence if final == 1 else 100 - final_confidence,
        "score_class": CLASSES[1],
    }


def _confidence(rng: np.random.Generator, correct: bool) -> int:
    return int(np.clip(round(rng.normal(75 if correct else 62, 15)), 0, 100))


def _ratings(design: StudyDesign, effects: PlantedEffects, people: pd.DataFrame, trials: pd.DataFrame,
             rng: np.random.Generator) -> pd.DataFrame:
    spec = design.peer_rating
    if spec.kind == "none" or not spec.items:
        return _empty("ratings")
    targets = _rating_targets(design, people, trials)
    # a vignette is the condition itself; peer records differ beyond their arm
    target_sd = effects.target_sd if (targets["kind"] == "peer_record").all() else 0.0
    target_effect = {t: rng.normal(0, target_sd) for t in targets["target_id"]}
    rows = []
    for rater in people.itertuples():
        leniency = rng.normal(0, effects.rater_sd)
        for target in _targets_for(spec, rater, targets, rng).itertuples():
            latent = effects.competence[target.target_arm] + leniency + target_effect[target.target_id]
            for item in spec.items:
                score = int(np.clip(round(latent + rng.normal(0, effects.rating_sd)), item.scale_min, item.scale_max))
                rows.append({"study_id": design.id, "rater_id": rater.participant_id, "target_kind": target.kind,
                             "target_id": target.target_id, "target_arm": target.target_arm, "item": item.id,
                             "score": score, "scale_min": item.scale_min, "scale_max": item.scale_max,
                             "rated_at": "2026-01-05T10:00:00+00:00", "target_source": target.source})
    return pd.DataFrame(rows, columns=list(COLUMNS["ratings"])).convert_dtypes()


def _rating_targets(design: StudyDesign, people: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    if design.peer_rating.kind == "vignette" or trials.empty:
        return pd.DataFrame({"target_id": [v.id for v in design.peer_rating.vignettes],
                             "target_arm": [v.target_arm for v in design.peer_rating.vignettes],
                             "kind": "vignette", "source": "vignette", "owner": None})
    first = trials.groupby("participant_id", as_index=False).first()
    return pd.DataFrame({"target_id": first["record_id"], "target_arm": first["arm"], "kind": "peer_record",
                         "source": "peer", "owner": first["participant_id"]})


def _targets_for(spec, rater, targets: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    if spec.kind == "vignette" and spec.assignment == "by_arm":
        return targets[targets["target_arm"] == rater.arm].head(1)
    candidates = targets[targets["owner"] != rater.participant_id]
    return candidates.iloc[rng.choice(len(candidates), size=min(spec.per_rater, len(candidates)), replace=False)]


def _participants(design: StudyDesign, people: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame({
        "study_id": design.id, "participant_id": people["participant_id"], "arm": people["arm"],
        "stratum": "role=" + people["role"], "role": people["role"], "specialty": "radiology",
        "experience_years": "3-5", "prior_ai_use": "sometimes", "status": "completed",
        "enrolled_at": "2026-01-05T09:00:00+00:00", "completed_at": "2026-01-05T09:30:00+00:00",
        "withdrawn_at": None, "attention_failures": 0, "pilot": False,
        # a planted export stands for the study being planned (power, recovery): analysed as people are
        "enrolled_via": "code", "allocation_unit": people["arm"],
        "consent_version": design.consent_version, "consent_versions": design.consent_version,
    })
    if design.factors:  # the participant's workflow, as the export gives it
        frame["arm"] = [design.first_workflow(unit) for unit in people["arm"]]
    return frame[list(COLUMNS["participants"])].convert_dtypes()


def _empty(name: str) -> pd.DataFrame:
    return pd.DataFrame(columns=list(COLUMNS[name]))
