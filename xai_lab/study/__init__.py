"""Study engine: designs, case selection, allocation, the participant lifecycle, simulation, export.

No Streamlit imports here: the study UI (app.py) is a thin shell over `StudyService`. The names
below are imported on first use, so reading a design (`xai-lab study validate`) loads neither
the database layer nor SciPy.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Step", "StudyDesign", "StudyService", "load_design"]


def __getattr__(name: str) -> Any:
    if name == "StudyDesign":
        from xai_lab.study.design import StudyDesign

        return StudyDesign
    if name == "load_design":
        from xai_lab.study.design_file import load_design

        return load_design
    if name in ("Step", "StudyService"):
        from xai_lab.study import service

        return getattr(service, name)
    raise AttributeError(f"module 'xai_lab.study' has no attribute {name!r}")
