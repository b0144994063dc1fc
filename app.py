"""xai-lab in the browser: participant, researcher and trainer pages.

    xai-lab serve --design studies/demo.toml      # or: xai-lab demo
    streamlit run app.py                         # development: the same pages, without serve's web layer
                                                 # (participant cookie, cache-clear filter, health check)

A thin shell: the pages live in `xai_lab.ui` and every rule in `xai_lab.study`.
"""

from xai_lab.ui.shell import run

run()
