"""Translations: every participant-facing string of the lab is in the catalogue, French and German
translate all of it with the same placeholders, and the engine's messages a participant can meet are
the catalogue's."""

from __future__ import annotations

import string
import uuid
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from conftest import use_lab, write_study

from xai_lab.errors import ConfigError
from xai_lab.study.cases import load_case_set
from xai_lab.study.design_file import load_design
from xai_lab.study.peer import USE_OF_AI
from xai_lab.study.service import EnrolmentClosed, StudyService, UnknownToken
from xai_lab.ui import i18n
from xai_lab.ui.answering import ENGINE_MESSAGES, sentence
from xai_lab.ui.screens.forms import PEER_USES

LOCALE = Path(i18n.__file__).resolve().parents[1] / "locale"
UI = Path(i18n.__file__).resolve().parent


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_the_catalogue_holds_every_marked_string_and_both_languages_translate_all_of_it():
    marked = {found[2] for found in extract_from_dir(str(UI), keywords={"_": None, "N_": None})}
    template = {m.id for m in read_po((LOCALE / "xai_lab.pot").open("rb")) if m.id}
    assert marked == template, "xai_lab/locale/xai_lab.pot is stale: run pybabel extract (docs/running.md)"
    for code in ("fr", "de"):
        catalog = read_po((LOCALE / code / "LC_MESSAGES" / "xai_lab.po").open("rb"), locale=code)
        translated = {m.id: m.string for m in catalog if m.id}
        assert set(translated) == template, f"{code}: run pybabel update (docs/running.md)"
        for message, text in translated.items():
            assert text.strip(), f"{code}: {message!r} is not translated"
            assert placeholders(text) <= placeholders(message) and text != message or message == "Standard", \
                (code, message, text)


def test_the_study_language_switches_every_string():
    i18n.use("de")
    try:
        assert i18n._("Continue") == "Weiter" and sentence("no participation token given; open the link from your "
                                                           "invitation").startswith("Kein Teilnahme-Token")
        i18n.use("fr")
        assert i18n._("Step {number} of {total}").format(number=2, total=9) == "Étape 2 sur 9"
    finally:
        i18n.use("en")
    assert i18n._("Continue") == "Continue"


def test_the_engine_messages_a_participant_meets_are_in_the_catalogue(study_home, monkeypatch):
    assert PEER_USES == tuple(USE_OF_AI.values())
    home = use_lab(study_home, monkeypatch)
    path = write_study(home, study_id="capped")
    path.write_text(path.read_text() + "\n[enrolment]\nmax_enrolments = 1\n")
    design = load_design(path)
    service = StudyService(None, design, None)
    said = []
    for token in ("", "not-a-token"):
        with pytest.raises(UnknownToken) as raised:
            service.engine = _engine(home)
            service.resume(token)
        said.append(str(raised.value))
    said.append(_closed_message(home, design))
    assert set(said) <= set(ENGINE_MESSAGES)


def test_a_design_names_its_language(tmp_path):
    path = write_study(tmp_path)
    path.write_text('language = "fr"\n' + path.read_text())
    assert load_design(path).language == "fr"
    path.write_text(path.read_text().replace('language = "fr"', 'language = "es"'))
    with pytest.raises(ConfigError, match="language must be one of 'en', 'fr', 'de'"):
        load_design(path)


def _engine(home: Path):
    from xai_lab.store.database import open_database

    return open_database(f"sqlite:///{home}/{uuid.uuid4().hex}.db")


def _closed_message(home: Path, design) -> str:
    from conftest import run_cli

    assert run_cli("study", "prepare", str(home / f"{design.id}.toml")).code == 0
    service = StudyService.open(design, load_case_set(design), url=f"sqlite:///{home}/{uuid.uuid4().hex}.db")
    service.enrol(via="code")
    with pytest.raises(EnrolmentClosed) as raised:
        service.enrol(via="code")
    return str(raised.value)
