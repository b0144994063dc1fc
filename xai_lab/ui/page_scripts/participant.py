"""The participant page script (`st.navigation` runs page files; the page lives in `xai_lab.ui.participant`)."""

from xai_lab.ui import participant

participant.render()
