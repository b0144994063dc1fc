"""`xai-lab data fetch` against a real HTTP server on the loopback interface (no internet needed)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest
from conftest import run_cli
from test_importers import make_medmnist_npz

from xai_lab.data import known


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local 'Zenodo' serving one MedMNIST-layout file as pneumoniamnist_64.npz."""
    served = tmp_path / "served"
    served.mkdir()
    path = make_medmnist_npz(served / "pneumoniamnist_64.npz", size=64)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(known, "MEDMNIST_RECORD", f"http://127.0.0.1:{server.server_address[1]}")
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    entry = known.MEDMNIST["pneumoniamnist"]
    monkeypatch.setitem(known.MEDMNIST, "pneumoniamnist",
                        dataclasses.replace(entry, md5_by_size={**entry.md5_by_size, 64: md5}))
    yield path
    server.shutdown()


def downloads(home: Path) -> list[str]:
    folder = home / "data" / ".downloads"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_fetch_downloads_verifies_and_imports(lab_home, mirror):
    result = run_cli("data", "fetch", "pneumoniamnist", "--size", "64")
    assert result.code == 0, result.err
    assert "pneumoniamnist_64" in run_cli("data", "list").out
    assert downloads(lab_home) == ["pneumoniamnist_64.npz"]
    again = run_cli("data", "fetch", "pneumoniamnist", "--size", "64", "--name", "second")  # served from cache
    assert again.code == 0, again.err


def test_fetch_rejects_a_file_with_the_wrong_checksum(lab_home, mirror):
    mirror.write_bytes(mirror.read_bytes() + b"tampered")
    result = run_cli("data", "fetch", "pneumoniamnist", "--size", "64")
    assert result.code == 2 and "not the official" in result.err
    assert downloads(lab_home) == []  # nothing partial or wrong is kept
    assert "pneumoniamnist_64" not in run_cli("data", "list").out


def test_fetch_without_a_server_says_how_to_import_by_hand(lab_home, monkeypatch):
    monkeypatch.setattr(known, "MEDMNIST_RECORD", "http://127.0.0.1:9")  # discard port: nothing listens
    result = run_cli("data", "fetch", "breastmnist")
    assert result.code == 2 and "could not download" in result.err and "xai-lab data import" in result.err
    assert downloads(lab_home) == []
