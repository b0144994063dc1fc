"""The case viewer on trial screens: zoom, pan and window/level, keyboard accessible, logged.

Why this way: a Streamlit v2 component (inline HTML/JS, no build step, no server of its own)
around Panzoom 4.6.2 (MIT, vendored in `viewer/`, 10 kB): a maintained, widely used pan/zoom
library with wheel, drag and pinch handling, so the lab writes no gesture code. Window/level is
a 256-entry lookup on a canvas, applied to the radiograph's grey values before the AI's map is
drawn on top (the map keeps its colours at any contrast). OpenSeadragon (tiled deep zoom) and
Cornerstone (DICOM-native) are built for images far larger than a study's 1024-px cases and would
add hundreds of kB to every page load on a hospital laptop. Nothing is fetched from a network:
the library ships inside the package.

The browser reports the reader's activity once they pause (counts since the step was shown,
the highest zoom); `StudyService.record_viewer` logs it and the trial record carries it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import streamlit as st

from xai_lab.ui.i18n import N_, _

ASSETS = Path(__file__).resolve().parent / "viewer"
# Contrast presets on the displayed grey values (0-255): a radiograph's own window is already
# applied (DICOM import, `xai_lab.data.dicom`); these stretch a half of the range for detail.
PRESETS = ({"label": N_("Standard"), "centre": 128, "width": 256},
           {"label": N_("More contrast"), "centre": 128, "width": 128},
           {"label": N_("Bright areas"), "centre": 176, "width": 128},
           {"label": N_("Dark areas"), "centre": 80, "width": 128})


def labels() -> dict[str, str]:
    """The viewer's words in the study's language (the script lays them out)."""
    return {"viewer": _("Case image viewer"), "zoom_in": _("Zoom in (+)"), "zoom_out": _("Zoom out (−)"),
            "contrast": _("Contrast:"), "preset": _("{label} contrast ({key})"), "reset": _("Reset"),
            "reset_name": _("Reset zoom and contrast (0)"), "less": _("less"), "more": _("more influence")}


@cache
def _component() -> Callable[..., Any]:
    # the style sheet travels inside the script, which adds it to the component's root itself:
    # Streamlit 1.67 did not apply a `css=` sheet given without `html=` in our browser tests
    style = f"const VIEWER_CSS = {json.dumps((ASSETS / 'viewer.css').read_text())};\n"
    script = (ASSETS / "panzoom.min.js").read_text() + "\n" + style + (ASSETS / "viewer.js").read_text()
    return st.components.v2.component("xai_lab_viewer", js=script)


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def show_viewer(key: str, reading_png: bytes, layer_png: bytes | None = None, *, layer_visible: bool = True,
                side_by_side: bool = False, heatmap_legend: bool = False,
                on_activity: Callable[[], None] | None = None) -> None:
    """Mount the viewer for one step (`key` names the step: a new step starts at zoom 1, Standard).

    The activity the browser reports lands in ``st.session_state[key]["activity"]``; `on_activity`
    runs when it changes.
    """
    _component()(key=key, data={"id": key, "base": data_url(reading_png),
                                "layer": data_url(layer_png) if layer_png else None,
                                "layer_visible": layer_visible, "side_by_side": side_by_side and bool(layer_png),
                                "heatmap_legend": heatmap_legend and bool(layer_png),
                                "presets": [{**preset, "label": _(preset["label"])} for preset in PRESETS],
                                "labels": labels()},
                 default={"activity": None}, on_activity_change=on_activity or (lambda: None))
