"""A headless browser stand-in: drives a served Streamlit app over its own websocket protocol.

Used by `benchmarks/ui_bench.py` (many simulated participants at once, where real browsers
would measure Chromium rather than the server) and by the multi-server test. It speaks what
Streamlit's frontend speaks: `BackMsg.rerun_script` with the query string and the widget
states, then reads `ForwardMsg`s until `script_finished`. Widgets are found by the user key at
the end of their id (``$$ID-<hash>-<key>``), so callers name them as the pages do.

    with ProtocolClient("127.0.0.1", 8501, "study=demo&token=...") as client:
        client.set_value("confidence:trial:0:final", [70])   # a slider's value
        client.click("decide:trial:0:final:lesion")          # returns seconds to the next screen

Only the widget kinds the study and trainer pages need are supported: button (trigger),
slider (double array), number input (int), selectbox and radio (string).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.sync.client import connect

STREAM_PATH = "/_stcore/stream"


class ProtocolError(RuntimeError):
    pass


@dataclass
class Screen:
    """What the last run drew: widget ids by user key, and every text shown (markdown, captions...)."""

    widgets: dict[str, str] = field(default_factory=dict)  # user key -> widget id
    texts: list[str] = field(default_factory=list)
    exception: str | None = None

    def text(self) -> str:
        return "\n".join(self.texts)


class ProtocolClient:
    def __init__(self, host: str, port: int, query_string: str, timeout_s: float = 30.0, page_name: str = "",
                 headers: dict[str, str] | None = None) -> None:
        self.url = f"ws://{host}:{port}{STREAM_PATH}"
        self.query_string = query_string
        self.timeout_s = timeout_s
        self.page_name = page_name  # "" is the default page; "trainer" is /trainer
        self.headers = headers or {}  # sent with the websocket handshake (cookies, forwarded-for)
        self.page_script_hash = ""
        self.session_id = ""
        self.values: dict[str, Any] = {}  # widget id -> ("kind", value), sent with every rerun
        self.screen = Screen()
        self._socket = None

    def __enter__(self) -> ProtocolClient:
        self._stack = contextlib.ExitStack()
        self._socket = self._stack.enter_context(connect(self.url, subprotocols=["streamlit"],
                                                         additional_headers=self.headers,
                                                         open_timeout=self.timeout_s, max_size=64 * 1024 * 1024))
        try:
            self.rerun()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    # ------------------------------------------------------------ actions

    def rerun(self, trigger: str | None = None) -> float:
        """Send the current widget states (plus a button trigger); seconds until the run finished."""
        message = BackMsg()
        state = message.rerun_script
        state.query_string = self.query_string
        state.page_script_hash = self.page_script_hash
        state.page_name = self.page_name
        for widget_id, (kind, value) in self.values.items():
            widget = state.widget_states.widgets.add()
            widget.id = widget_id
            if kind == "double_array":
                widget.double_array_value.data.extend(float(v) for v in value)
            elif kind == "int":
                widget.int_value = int(value)
            elif kind == "json":  # a custom component's state (the viewer's report)
                widget.json_value = json.dumps(value)
            else:
                widget.string_value = str(value)
        if trigger is not None:
            widget = state.widget_states.widgets.add()
            widget.id = trigger
            widget.trigger_value = True
        started = time.perf_counter()
        self._socket.send(message.SerializeToString())
        self._read_until_finished()
        return time.perf_counter() - started

    def click(self, key: str) -> float:
        return self.rerun(trigger=self.widget_id(key))

    def set_value(self, key: str, value: Any) -> float:
        kind = ("double_array" if isinstance(value, list | tuple) else "json" if isinstance(value, dict) else
                "int" if isinstance(value, int) else "string")
        self.values[self.widget_id(key)] = (kind, value)
        return self.rerun()

    def send(self, message: BackMsg) -> None:
        """Send any other message (e.g. ``clear_cache``) without waiting for an answer."""
        self._socket.send(message.SerializeToString())

    def widget_id(self, key: str) -> str:
        try:
            return self.screen.widgets[key]
        except KeyError:
            raise ProtocolError(f"no widget with key {key!r} on the screen; keys: {sorted(self.screen.widgets)}; "
                                f"text: {self.screen.text()[:300]!r}") from None

    def keys(self, prefix: str = "") -> list[str]:
        return [key for key in self.screen.widgets if key.startswith(prefix)]

    # ------------------------------------------------------------ reading

    def _read_until_finished(self) -> None:
        screen = Screen()
        deadline = time.monotonic() + self.timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProtocolError(f"no script_finished within {self.timeout_s} s")
            message = ForwardMsg()
            message.ParseFromString(self._socket.recv(timeout=remaining))
            kind = message.WhichOneof("type")
            if kind == "new_session":
                self.page_script_hash = message.new_session.page_script_hash or self.page_script_hash
                self.session_id = message.new_session.initialize.session_id or self.session_id
            elif kind == "navigation":  # st.navigation names the page this run drew: stay on it
                self.page_script_hash = message.navigation.page_script_hash or self.page_script_hash
            elif kind == "page_info_changed":
                self.query_string = message.page_info_changed.query_string
            elif kind == "delta" and message.delta.WhichOneof("type") == "new_element":
                _read_element(message.delta.new_element, screen)
            elif kind == "script_finished":
                if message.script_finished == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    screen = Screen()  # st.rerun(): the next run draws the screen
                    continue
                self.screen = screen
                self.values = {wid: v for wid, v in self.values.items() if wid in screen.widgets.values()}
                if screen.exception:
                    raise ProtocolError(f"the app raised: {screen.exception}")
                return


def _read_element(element, screen: Screen) -> None:
    kind = element.WhichOneof("type")
    if kind is None:
        return
    body = getattr(element, kind)
    if kind == "exception":
        screen.exception = f"{body.type}: {body.message}"
        return
    widget_id = getattr(body, "id", "")
    if widget_id and "-" in widget_id:
        screen.widgets[widget_id.split("-", 2)[-1]] = widget_id
    for name in ("body", "label", "text", "value", "code_text"):
        value = getattr(body, name, None)
        if isinstance(value, str) and value:
            screen.texts.append(value)
