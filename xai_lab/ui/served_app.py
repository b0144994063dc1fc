"""The file `xai-lab serve` hands to ``streamlit run``: the study pages as an ASGI `st.App`.

Streamlit finds the ``app = App(...)`` assignment below and serves it with uvicorn; the pages
themselves are the script `xai_lab/ui/entry.py`. The web layer around them (cache-clear
filter, database-aware health check, participant cookie route, browser id, upload budget) is `xai_lab.ui.web`.
"""

from starlette.middleware import Middleware
from streamlit.starlette import App

from xai_lab.ui.upload_budget import UploadBudget
from xai_lab.ui.web import ENTRY, BrowserId, HealthIncludesDatabase, IgnoreClientCacheClears, lifespan, routes

LAYERS = (IgnoreClientCacheClears, HealthIncludesDatabase, BrowserId, UploadBudget)
app = App(ENTRY, routes=routes(), lifespan=lifespan, middleware=[Middleware(layer) for layer in LAYERS])
