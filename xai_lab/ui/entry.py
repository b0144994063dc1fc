"""The script `xai-lab serve` hands to Streamlit (the repository's app.py does the same)."""

from xai_lab.ui.shell import run

run()
