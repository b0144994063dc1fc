"""What browsers send over Streamlit's websocket, checked before Streamlit reads it (ASGI middleware
`ClientMessageFilter`). Any client can write these messages itself.

``clear_cache`` messages are dropped (and logged): Streamlit lets any browser send one, and it empties
every session's `st.cache_data`/`st.cache_resource` on the server. Participants have no reason to; an
attacker would use it to make the server redo work. Shared state does not rely on this alone: it
lives in a process-level registry (`xai_lab.ui.registry`).

A widget state of the wrong kind (a
slider sent a number instead of a list) or component JSON that does not parse, or nests 100,000
levels deep, made Streamlit raise while it restored the session's widgets, before the page script
ran: every later run of that session raised again (its stored state stays), and each wrote a
traceback (305 in one run of the attack probe). `WidgetStateFilter` drops such states:

- the value's kind must be the one Streamlit's widget of that type sends (`VALUE_KINDS`), for
  widgets this connection has been shown (their ids come from the elements the server sent);
- component JSON must parse, be at most `MAX_JSON_CHARS` long and `MAX_JSON_DEPTH` deep, and a
  component's state must be an object.

A dropped state is as if the widget had not been touched: the page draws as before and stays
usable. Each connection logs one warning line, at its first drop; drops are counted after that.
A widget this connection has not been shown (a reconnect whose elements came from the browser's
cache) is checked for JSON only, since its kind is not known here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

LOG = logging.getLogger("xai_lab.web")
MAX_JSON_CHARS = 64 * 1024  # the viewer reports a few counters; nothing the pages use is near this
MAX_JSON_DEPTH = 16
JSON_KINDS = ("json_value", "json_trigger_value")
# What Streamlit 1.67's widgets send, by element type (their `value_type` when they register).
VALUE_KINDS: dict[str, frozenset[str]] = {
    "button": frozenset({"trigger_value"}),
    "download_button": frozenset({"trigger_value"}),
    "checkbox": frozenset({"bool_value"}),  # st.checkbox and st.toggle
    "slider": frozenset({"double_array_value"}),
    "number_input": frozenset({"double_value", "int_value"}),
    "selectbox": frozenset({"string_value"}),
    "radio": frozenset({"string_value"}),
    "text_input": frozenset({"string_value"}),
    "multiselect": frozenset({"string_array_value"}),
    "button_group": frozenset({"string_array_value"}),
    "file_uploader": frozenset({"file_uploader_state_value"}),
    "bidi_component": frozenset({"json_value", "json_trigger_value"}),
}


@dataclass
class ConnectionWidgets:
    """What one websocket connection has been shown, and what it sent that was dropped."""

    kinds: dict[str, frozenset[str]] = field(default_factory=dict)  # widget id -> value kinds it may send
    dropped: int = 0

    def learn(self, data: bytes) -> None:
        """Note the widgets in a message the server sends to this browser."""
        message = ForwardMsg()
        try:
            message.ParseFromString(data)
        except Exception:  # noqa: BLE001 - not ours to judge: the browser gets it unchanged
            return
        if message.WhichOneof("type") != "delta" or message.delta.WhichOneof("type") != "new_element":
            return
        element = message.delta.new_element
        kind = element.WhichOneof("type")
        if kind in VALUE_KINDS:
            widget_id = getattr(getattr(element, kind), "id", "")
            if widget_id:
                self.kinds[widget_id] = VALUE_KINDS[kind]

    def clean(self, data: bytes) -> bytes | None:
        """The message with unacceptable widget states left out (unchanged when all are fine); None
        for a message to drop whole (``clear_cache``)."""
        message = BackMsg()
        try:
            message.ParseFromString(data)
        except Exception:  # noqa: BLE001 - Streamlit refuses what it cannot parse, quietly
            return data
        if message.WhichOneof("type") == "clear_cache":
            LOG.warning("ignored a client's clear_cache message (clients may not clear the server's caches)")
            return None
        if message.WhichOneof("type") != "rerun_script":
            return data
        widgets = message.rerun_script.widget_states.widgets
        problems = [(index, problem) for index, widget in enumerate(widgets)
                    if (problem := self._problem(widget)) is not None]
        if not problems:
            return data
        first = problems[0][1]
        for index, _ in reversed(problems):
            del widgets[index]
        if self.dropped == 0:
            LOG.warning("dropped a browser's malformed widget state (%s); further ones from this connection are "
                        "dropped without a log line", first)
        self.dropped += len(problems)
        return message.SerializeToString()

    def _problem(self, widget: Any) -> str | None:
        kind = widget.WhichOneof("value")
        expected = self.kinds.get(widget.id)
        if kind is not None and expected is not None and kind not in expected:
            return f"{kind} for a widget that sends {' or '.join(sorted(expected))}"
        if kind in JSON_KINDS:
            return json_problem(getattr(widget, kind), object_only=kind == "json_value")
        return None


def json_problem(text: str, object_only: bool) -> str | None:
    """Why this component JSON is refused, or None: too long, not JSON, nested too deeply, or (a
    component's state, `object_only`) not an object, which Streamlit logs a traceback for."""
    if len(text) > MAX_JSON_CHARS:
        return f"component JSON of {len(text)} characters"
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return "component JSON that does not parse"
    if _depth(value) > MAX_JSON_DEPTH:
        return f"component JSON nested deeper than {MAX_JSON_DEPTH}"
    if object_only and not isinstance(value, dict):
        return f"a component state that is a {type(value).__name__}, not an object"
    return None


def _depth(value: Any) -> int:
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            pending.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


class ClientMessageFilter:
    """ASGI middleware: `ConnectionWidgets` for every websocket connection to the app."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        widgets = ConnectionWidgets()

        async def receive_checked() -> dict[str, Any]:
            while True:
                message = await receive()
                if message["type"] != "websocket.receive" or not message.get("bytes"):
                    return message
                cleaned = widgets.clean(message["bytes"])
                if cleaned is not None:
                    return {**message, "bytes": cleaned}

        async def send_noted(message: dict[str, Any]) -> None:
            if message["type"] == "websocket.send" and message.get("bytes"):
                widgets.learn(message["bytes"])
            await send(message)

        await self.app(scope, receive_checked, send_noted)
