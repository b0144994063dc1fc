"""The trainer page script (`st.navigation` runs page files; the page lives in `xai_lab.ui.trainer`)."""

from xai_lab.ui import trainer

trainer.render()
