"""Helpers the tests (and the benchmarks and screenshot script, which add tests/ to the path) share: a
served app on a free port, a client of Streamlit's websocket protocol, DICOM files made to order."""
