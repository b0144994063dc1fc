"""Process-wide resources for the pages, created once per server process (`st.cache_resource`)."""

from __future__ import annotations

import streamlit as st
from sqlalchemy import Engine

from xai_lab.store.database import open_database
from xai_lab.study.access import LoginThrottle
from xai_lab.study.catalogue import ServedStudy, open_catalogue
from xai_lab.study.media import StudyMedia


@st.cache_resource(show_spinner=False)
def database() -> Engine:
    return open_database()


@st.cache_resource(show_spinner=False)
def catalogue() -> dict[str, ServedStudy]:
    return open_catalogue(database())


@st.cache_resource(show_spinner="Loading the study's images ...", max_entries=8)
def media(study_id: str) -> StudyMedia:
    return StudyMedia.open(catalogue()[study_id].case_set)


@st.cache_resource(show_spinner=False)
def login_throttle() -> LoginThrottle:
    return LoginThrottle()


@st.cache_data(show_spinner=False, max_entries=512)
def image_png(study_id: str, case_id: str) -> bytes:
    return media(study_id).image_png(case_id)


@st.cache_data(show_spinner=False, max_entries=512)
def thumbnail_png(study_id: str, case_id: str) -> bytes:
    return media(study_id).image_png(case_id, display_size=256)


@st.cache_data(show_spinner=False, max_entries=512)
def overlay_png(study_id: str, case_id: str, method: str, target: int | None) -> bytes | None:
    return media(study_id).overlay_png(case_id, method, target)


def client_address() -> str:
    """The browser's IP address for throttling ("unknown" when Streamlit cannot tell, e.g. in AppTest)."""
    address = st.context.ip_address
    return address if isinstance(address, str) else "unknown"
