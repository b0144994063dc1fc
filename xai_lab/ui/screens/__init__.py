"""One screen per step kind, looked up by the kind of the step the service says is current.

A screen draws `step.content` (which the step kind in `xai_lab.study.steps` built) and answers
through `xai_lab.ui.answering.submit`; it decides nothing itself. Every step kind must have a
screen: `check_screens` runs when this module loads (the served app's first page, and `xai-lab
serve` before it starts Streamlit), so a kind without one stops the server with one line instead of
showing a participant in the middle of a study "This participation has ended."
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from xai_lab.study.catalogue import ServedStudy
from xai_lab.study.service import Step
from xai_lab.study.steps import STEP_KINDS
from xai_lab.ui.screens import forms, reading


@dataclass(frozen=True)
class Screen:
    draw: Callable[[ServedStudy, str, Step], None]
    offers_leaving: bool = True  # "continue later" and "withdraw" under the screen (not before consent)


SCREENS: dict[str, Screen] = {
    "consent": Screen(forms.consent, offers_leaving=False), "profile": Screen(forms.profile),
    "instructions": Screen(forms.instructions), "practice": Screen(reading.trial), "trial": Screen(reading.trial),
    "attention": Screen(reading.attention), "rating": Screen(forms.rating),
    "questionnaire": Screen(forms.questionnaire), "debrief": Screen(forms.debrief),
    "reconsent": Screen(forms.reconsent, offers_leaving=False),
}


class MissingScreen(RuntimeError):
    """A step kind the study engine knows and the pages cannot show (or a screen for no kind)."""


def check_screens(screens: dict[str, Screen] = SCREENS) -> None:
    missing = sorted(set(STEP_KINDS) - set(screens))
    unknown = sorted(set(screens) - set(STEP_KINDS))
    if missing:
        raise MissingScreen(f"step kind(s) {', '.join(missing)} have no screen; add one to SCREENS in "
                            "xai_lab/ui/screens/__init__.py (docs/studies.md, 'Adding a step kind')")
    if unknown:
        raise MissingScreen(f"SCREENS names {', '.join(unknown)}, which no step kind declares; register the kind "
                            "in xai_lab/study/steps/__init__.py or remove the screen")


check_screens()
