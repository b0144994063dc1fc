"""The file `xai-lab serve` hands to ``streamlit run``: the study pages as an ASGI `st.App`.

Streamlit finds the ``app = App(...)`` assignment below and serves it with uvicorn; the pages
themselves are the script `xai_lab/ui/entry.py`. The web layers around them: `xai_lab.ui.web`
(database-aware health check, participant cookie route, browser id), `xai_lab.ui.message_filter`
(cache-clear messages dropped, widget states checked) and `xai_lab.ui.upload_budget` (bounded uploads).
"""

from starlette.middleware import Middleware
from streamlit.starlette import App

from xai_lab.ui.message_filter import ClientMessageFilter
from xai_lab.ui.upload_budget import UploadBudget
from xai_lab.ui.web import ENTRY, BrowserId, HealthIncludesDatabase, lifespan, routes

LAYERS = (ClientMessageFilter, HealthIncludesDatabase, BrowserId, UploadBudget)
app = App(ENTRY, routes=routes(), lifespan=lifespan, middleware=[Middleware(layer) for layer in LAYERS])
