"""Every participant-facing string of the lab, in one gettext catalogue per language.

    from xai_lab.ui.i18n import _, N_
    st.button(_("Continue"))                        # translated into the study's language
    LEGEND = N_("The map is hidden.")              # a constant, marked for extraction; _(LEGEND) where shown

The study's language is its design's `language` (en, fr, de); the participant page sets it for the
run (`use`). The catalogues are `xai_lab/locale/<language>/LC_MESSAGES/xai_lab.po`, extracted from the
sources with Babel (`pybabel extract -k _ -k N_ -o xai_lab/locale/xai_lab.pot xai_lab/ui`, then
`pybabel update`; docs/running.md). Why gettext with Babel: .po files are what translators' tools
read, Babel extracts and merges them and reads a .po directly, so no compiled .mo needs building or
committing. The design's own texts (consent, instructions, items) stay the researcher's: they write
them in the study's language.
"""

from __future__ import annotations

import gettext
import io
from contextvars import ContextVar
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from xai_lab.study.design import LANGUAGES

LOCALE = Path(__file__).resolve().parents[1] / "locale"
DOMAIN = "xai_lab"
_language: ContextVar[str] = ContextVar("xai_lab_language", default="en")


def use(language: str) -> None:
    """The language of this script run's strings (the participant page sets the study's)."""
    _language.set(language if language in LANGUAGES else "en")


def language() -> str:
    return _language.get()


def _(message: str) -> str:
    return catalogue(_language.get()).gettext(message)


def N_(message: str) -> str:  # noqa: N802 (gettext's name for a marker that does not translate)
    return message


@cache
def catalogue(code: str) -> gettext.NullTranslations:
    if code == "en":
        return gettext.NullTranslations()
    with (LOCALE / code / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as source:
        messages = read_po(source, locale=code)
    compiled = io.BytesIO()
    write_mo(compiled, messages)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)
