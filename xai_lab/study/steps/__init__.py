"""Step kinds, one module each, looked up by the kind in a step key ("trial:3:final" -> Trial).

A new kind is one module here (a `StepKind` subclass, registered below), its place in the plan
(`xai_lab.study.flow.build_plan`) and one screen in `xai_lab.ui.screens`; nothing else changes.
docs/studies.md walks through an example.
"""

from __future__ import annotations

from xai_lab.study.flow import ENDS, StepKey
from xai_lab.study.steps.attention import Attention, AttentionContent
from xai_lab.study.steps.base import SimulatedReader, StepContext, StepKind
from xai_lab.study.steps.consent import Consent, ConsentContent, Reconsent, ReconsentContent
from xai_lab.study.steps.debrief import Debrief, DebriefContent
from xai_lab.study.steps.instructions import Instructions, InstructionsContent
from xai_lab.study.steps.practice import Practice
from xai_lab.study.steps.profile import Profile, ProfileContent
from xai_lab.study.steps.questionnaire import Questionnaire, QuestionnaireContent
from xai_lab.study.steps.rating import Rating, RatingContent
from xai_lab.study.steps.trial import Trial, TrialContent

STEP_KINDS: dict[str, StepKind] = {kind.kind: kind for kind in (
    Consent(), Profile(), Instructions(), Practice(), Trial(), Attention(), Rating(), Questionnaire(), Debrief(),
    Reconsent())}


# What a screen receives (`Step.content`): one typed mapping per kind, the contract between a kind and its screen.
StepContent = (ConsentContent | ProfileContent | InstructionsContent | TrialContent | AttentionContent
               | RatingContent | QuestionnaireContent | DebriefContent | ReconsentContent)


class UnknownStepKind(ValueError):
    """A step key whose kind no module declares (a database written by a newer release, or a typo)."""


def kind_of(key: str) -> StepKind:
    """The step kind of a step key ("trial:3:final" -> the Trial kind)."""
    kind = key.split(":", 1)[0]
    try:
        return STEP_KINDS[kind]
    except KeyError:
        raise UnknownStepKind(f"step key {key!r} names no known step kind (known: {', '.join(STEP_KINDS)}); "
                              "was the study run by a newer xai-lab?") from None


def parse_step_key(key: str) -> StepKey:
    """A plan's step key, read by its kind's declared shape; the end states (complete, declined,
    withdrawn) are keys without a kind."""
    if key in ENDS:
        return StepKey(key)
    return kind_of(key).parse_key(key.split(":")[1:])


__all__ = ["STEP_KINDS", "AttentionContent", "ConsentContent", "DebriefContent", "InstructionsContent",
           "ProfileContent", "QuestionnaireContent", "RatingContent", "ReconsentContent",
           "SimulatedReader", "StepContent", "StepContext",
           "StepKind", "TrialContent", "UnknownStepKind", "kind_of", "parse_step_key"]
