"""The design's [recruitment] section: a recruitment panel's URL parameters and redirects.

    [recruitment]
    panel = "prolific"              # its parameters: PROLIFIC_PID, STUDY_ID, SESSION_ID
    completion_url = "https://app.prolific.com/submissions/complete?cc={code}"
    completion_code = "C1ABC2DE"
    screenout_url = "https://app.prolific.com/submissions/complete?cc=NOCONSENT"

A reader of its own because the URLs are checked as URLs (a mistyped host sends every participant to
nowhere, so the host must at least look like one) and the parameters follow from the panel.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from xai_lab.study.design import PANEL_PRESETS, PANELS, RecruitmentSpec
from xai_lab.study.design_toml import TomlTable, short

PARAMETER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
CODE = re.compile(r"[A-Za-z0-9_-]{1,64}")
LOOPBACK = ("localhost", "127.0.0.1")
MAX_PARAMETERS = 8


def read_recruitment(table: TomlTable | None) -> RecruitmentSpec:
    if table is None:
        return RecruitmentSpec()
    panel = table.choice("panel", PANELS)
    if panel == "none":
        table.done()
        return RecruitmentSpec()
    preset = PANEL_PRESETS.get(panel, ())
    parameters = tuple(table.strings("parameters", default=list(preset) or None))
    bad = next((p for p in parameters if not PARAMETER.fullmatch(p)), None)
    if not parameters or len(parameters) > MAX_PARAMETERS or bad is not None or len(set(parameters)) < len(parameters):
        table.fail("parameters", f"must list 1-{MAX_PARAMETERS} distinct URL parameter names (letters, digits, _), "
                                 f"the panel's participant id first, e.g. [\"PROLIFIC_PID\", \"STUDY_ID\"]; got "
                                 f"{short(list(parameters))}")
    if {"study", "token", "code"} & set(parameters):
        table.fail("parameters", "must not be study, token or code: the study link uses those names")
    code = table.string("completion_code")
    if not CODE.fullmatch(code):
        table.fail("completion_code", f"must be 1-64 letters, digits, - or _ as the panel gave it, got {short(code)}")
    spec = RecruitmentSpec(panel=panel, parameters=parameters, completion_url=_url(table, "completion_url"),
                           completion_code=code, screenout_url=_url(table, "screenout_url"))
    table.done()
    return spec


def _url(table: TomlTable, key: str) -> str:
    url = table.string(key)
    parts = urlsplit(url.replace("{code}", "CODE"))
    host = parts.hostname or ""
    loopback = host in LOOPBACK
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        table.fail(key, f"must be an https:// address, got {short(url)}")
    if not loopback and ("." not in host or host.endswith(".") or not all(host.split("."))):
        table.fail(key, f"has no valid host name ({short(host)}); copy the address from the panel's study page")
    return url
