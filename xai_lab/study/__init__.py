"""Study engine: designs, case selection, allocation, the participant lifecycle, simulation, export.

No Streamlit imports here: the study UI (app.py) is a thin shell over `StudyService`.
"""

from xai_lab.study.design import StudyDesign, load_design
from xai_lab.study.service import Step, StudyService

__all__ = ["Step", "StudyDesign", "StudyService", "load_design"]
