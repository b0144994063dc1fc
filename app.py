"""xai-lab in the browser: participant, researcher and trainer pages.

    xai-lab serve --study studies/demo.toml      # or: xai-lab demo
    streamlit run app.py                         # the same app, with whatever XAI_LAB_STUDIES names

A thin shell: the pages live in `xai_lab.ui` and every rule in `xai_lab.study`.
"""

from xai_lab.ui.shell import run

run()
