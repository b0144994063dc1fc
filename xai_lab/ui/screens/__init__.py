"""One screen function per step kind, looked up by the kind of the step the service says is current.

A screen draws `step.content` (which the step kind in `xai_lab.study.steps` built) and answers
through `xai_lab.ui.answering.submit`; it decides nothing itself.
"""

from __future__ import annotations

from collections.abc import Callable

from xai_lab.study.catalogue import ServedStudy
from xai_lab.study.service import Step
from xai_lab.ui.screens import forms, reading

Screen = Callable[[ServedStudy, str, Step], None]

SCREENS: dict[str, Screen] = {
    "consent": forms.consent, "profile": forms.profile, "instructions": forms.instructions,
    "practice": reading.trial, "trial": reading.trial, "attention": reading.attention,
    "rating": forms.rating, "questionnaire": forms.questionnaire, "debrief": forms.debrief,
}
