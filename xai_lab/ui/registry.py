"""What the pages share within one server process: the database, the served studies, the throttles.

These live here, in module globals behind a lock, not in `st.cache_resource`: any browser can
send Streamlit's ``clear_cache`` message, and a cleared resource cache dropped the throttles
(a fresh set of password guesses per message) and left each discarded engine's connections
open until garbage collection (60 PostgreSQL connections after 60 messages). The served ASGI
app also drops such messages (`xai_lab.ui.web`); the registry keeps this safe under plain
``streamlit run app.py`` too. No Streamlit here: the web layer uses it before any page runs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Engine

from xai_lab.store.database import database_url, open_database
from xai_lab.study.access import AccessGuard
from xai_lab.study.catalogue import ServedStudy, open_catalogue, served_study_ids

if TYPE_CHECKING:  # the media module loads the dataset code (PyTorch): imported when a page first shows an image
    from xai_lab.study.media import StudyMedia

T = TypeVar("T")
MEDIA_ENTRIES = 8  # studies whose images are held in memory at once

_lock = threading.RLock()
_engines: dict[str, Engine] = {}
_catalogues: dict[tuple[str, tuple[str, ...]], dict[str, ServedStudy]] = {}
_media: OrderedDict[tuple[str, str], StudyMedia] = OrderedDict()
_guard: list[AccessGuard] = []


def _once(table: dict, key, make: Callable[[], T]) -> T:
    with _lock:
        if key not in table:
            table[key] = make()
        return table[key]


def database() -> Engine:
    """The engine for the configured database URL: one per URL per process, never re-created."""
    url = database_url()
    return _once(_engines, url, lambda: open_database(url))


def catalogue() -> dict[str, ServedStudy]:
    """The studies this process serves (``XAI_LAB_STUDIES``), opened once on the shared engine."""
    study_ids = served_study_ids()
    return _once(_catalogues, (database_url(), study_ids), lambda: open_catalogue(database(), study_ids))


def media(study_id: str) -> StudyMedia:
    """A served study's images and overlays, the `MEDIA_ENTRIES` most recently used kept in memory."""
    key = (database_url(), study_id)
    with _lock:
        if key in _media:
            _media.move_to_end(key)
            return _media[key]
    from xai_lab.study.media import StudyMedia

    loaded = StudyMedia.open(catalogue()[study_id].case_set)  # seconds: outside the lock
    with _lock:
        _media[key] = _media.get(key, loaded)
        while len(_media) > MEDIA_ENTRIES:
            _media.popitem(last=False)
        return _media[key]


def access_guard() -> AccessGuard:
    """The process's throttles for passwords, enrolment codes and enrolments."""
    with _lock:
        if not _guard:
            _guard.append(AccessGuard())
        return _guard[0]


def close_all() -> None:
    """Dispose of every engine and forget the registry (server shutdown; tests between labs)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _catalogues.clear()
        _media.clear()
        _guard.clear()
