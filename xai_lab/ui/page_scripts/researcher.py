"""The researcher page script (`st.navigation` runs page files; the page lives in `xai_lab.ui.researcher`)."""

from xai_lab.ui import researcher

researcher.render()
