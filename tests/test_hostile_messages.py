"""Hostile websocket messages against `xai-lab serve`: widget states of the wrong kind and component
JSON that is invalid, not an object or 100,000 levels deep are dropped before Streamlit reads them
(`xai_lab.ui.message_filter`), so the page stays usable and the log gets one line, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import serving
from streamlit.proto.BackMsg_pb2 import BackMsg
from support.protocol_client import ProtocolClient

from xai_lab.store.database import open_database
from xai_lab.study.cases import load_case_set
from xai_lab.study.design_file import load_design
from xai_lab.study.service import StudyService

pytestmark = pytest.mark.served


@pytest.fixture(scope="module")
def at_first_trial(study_home: Path):
    """Study `m` served, and a participant whose current step is the first reading (viewer on screen)."""
    with serving(study_home, "m", arms='["verify", "rely"]', n=3, blocks="[2]") as (design_path, port):
        design = load_design(design_path)
        service = StudyService(open_database(), design, load_case_set(design))
        token = service.enrol(via="invite")
        step = service.submit(token, service.resume(token).key, {"agree": True}, "consent")
        step = service.submit(token, step.key, {name: options[0] for name, options in step.content["fields"].items()},
                              "profile")
        service.submit(token, step.key, {}, "instructions")
        yield study_home, port, service, token


def hostile(client: ProtocolClient, index: int) -> BackMsg:
    """The index-th of a cycle of malformed reruns, aimed at the widgets on the client's screen."""
    widgets = client.screen.widgets
    viewer = next(wid for key, wid in widgets.items() if key.startswith("viewer:"))
    slider = next(wid for key, wid in widgets.items() if key.startswith("confidence:"))
    button = next(wid for key, wid in widgets.items() if key.startswith("decide:"))
    message = BackMsg()
    rerun = message.rerun_script
    rerun.query_string, rerun.page_script_hash = client.query_string, client.page_script_hash
    state = rerun.widget_states.widgets.add()
    kind = index % 7
    state.id = viewer if kind < 4 else slider if kind < 6 else button
    if kind == 0:
        state.json_value = "{not json"
    elif kind == 1:
        state.json_value = "[" * 30_000 + "]" * 30_000  # within the length limit, far beyond any depth
    elif kind == 2:
        state.json_value = json.dumps({"activity": [1, 2, 3]})  # an activity that is not an object
    elif kind == 3:
        state.json_value = json.dumps("a string, not a state")
    elif kind == 4:
        state.int_value = 7  # a slider sends a list of numbers
    elif kind == 5:
        state.string_value = "abc"
    else:
        state.string_value = "not a trigger"
    return message


def test_300_malformed_messages_leave_the_page_usable_and_the_log_quiet(at_first_trial):
    home, port, service, token = at_first_trial
    log_file = home / f"serve-{port}.log"
    lines_before = len(log_file.read_text().splitlines())
    with ProtocolClient("127.0.0.1", port, f"study=m&token={token}") as client:
        step = service.resume(token).key
        for index in range(300):
            client.send(hostile(client, index))
        client.rerun()  # every message before it was read; the page draws as before
        assert client.keys("decide:") and service.resume(token).key == step
        client.set_value(f"confidence:{step}", [70])
        client.click(client.keys("decide:")[0])  # and the participant answers as usual
    assert service.resume(token).key != step
    log = log_file.read_text().splitlines()[lines_before:]
    assert not any("Traceback" in line for line in log), "\n".join(log[-40:])
    dropped = [line for line in log if "malformed widget state" in line]
    assert len(dropped) == 1, dropped  # one line for the connection, however many messages
