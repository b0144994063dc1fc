"""The pages' view of shared resources: the process registry, rendered images, the client's identity.

Shared state (database, served studies, throttles) is in `xai_lab.ui.registry`, out of reach
of Streamlit's ``clear_cache``. Images rendered for display stay in `st.cache_data`: clearing
that only costs a re-render.
"""

from __future__ import annotations

import streamlit as st

from xai_lab.ui.registry import access_guard, catalogue, database, media

__all__ = ["access_guard", "catalogue", "client_address", "database", "layer_png", "media", "reading_png",
           "thumbnail_png"]


@st.cache_data(show_spinner=False, max_entries=512)
def reading_png(study_id: str, case_id: str) -> bytes:
    return media(study_id).reading_png(case_id)


@st.cache_data(show_spinner=False, max_entries=512)
def layer_png(study_id: str, case_id: str, look: str, model: str | None = None,
              map_source: str = "model") -> bytes | None:
    return media(study_id).layer_png(case_id, look, model, map_source)


@st.cache_data(show_spinner=False, max_entries=512)
def thumbnail_png(study_id: str, case_id: str) -> bytes:
    return media(study_id).image_png(case_id, display_size=256)


def client_address() -> str:
    """Who this browser session is, for throttling: the connection's address.

    `xai-lab serve` has uvicorn resolve ``X-Forwarded-For`` only from the proxies in
    ``XAI_LAB_TRUSTED_PROXIES`` (see `xai_lab.study.access.client_identity`), so the address
    here cannot be chosen by the client. Streamlit reports loopback connections as None: they
    are one machine, one client ("loopback"); with no connection at all (AppTest) "unknown".
    """
    address = st.context.ip_address
    if isinstance(address, str) and address:
        return address
    return "loopback" if st.context.headers else "unknown"
