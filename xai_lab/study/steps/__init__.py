"""Step kinds, one module each, looked up by the kind in a step key ("trial:3:final" -> Trial).

A new kind is one module here (a `StepKind` subclass, registered below), its place in the plan
(`xai_lab.study.flow.build_plan`) and one screen in `xai_lab.ui.screens`; docs/studies.md
walks through an example.
"""

from __future__ import annotations

from xai_lab.study.steps.attention import Attention
from xai_lab.study.steps.base import SimulatedReader, StepContext, StepKind
from xai_lab.study.steps.consent import Consent
from xai_lab.study.steps.debrief import Debrief
from xai_lab.study.steps.instructions import Instructions
from xai_lab.study.steps.practice import Practice
from xai_lab.study.steps.profile import Profile
from xai_lab.study.steps.questionnaire import Questionnaire
from xai_lab.study.steps.rating import Rating
from xai_lab.study.steps.trial import Trial

STEP_KINDS: dict[str, StepKind] = {kind.kind: kind for kind in (
    Consent(), Profile(), Instructions(), Practice(), Trial(), Attention(), Rating(), Questionnaire(), Debrief())}

__all__ = ["STEP_KINDS", "SimulatedReader", "StepContext", "StepKind"]
