"""The Streamlit study UI: participant, researcher and trainer pages over `xai_lab.study`.

Pages only lay out widgets and call the library; every rule (allocation, what a step accepts,
who may see what) lives in `xai_lab.study`, so the simulator, the tests and the UI share it.
"""
