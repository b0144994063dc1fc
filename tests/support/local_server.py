"""`served_app`: `xai-lab serve` in a child process on a free loopback port, for tests and benchmarks.

    with served_app(Path("studies/demo.toml"), home) as port:
        ...  # http://127.0.0.1:{port}/ answers; the server stops when the block ends

The server's output goes to ``HOME/serve-PORT.log`` (the browser test checks that no token
appears in it).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def served_app(design: Path | list[Path], home: Path, database: str | None = None, password: str = "researcher-pass",
               port: int | None = None) -> Iterator[int]:
    """`xai-lab serve --design DESIGN ...` in a child process on a free loopback port; yields the port."""
    port = port or free_port()
    env = {**os.environ, "XAI_LAB_HOME": str(home), "XAI_LAB_ADMIN_PASSWORD": password}
    studies = [arg for path in (design if isinstance(design, list) else [design]) for arg in ("--design", str(path))]
    command = [sys.executable, "-m", "xai_lab.cli", "serve", *studies, "--port", str(port)]
    if database:
        command += ["--database", database]
    log = (home / f"serve-{port}.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=home)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the app did not start: {(home / f'serve-{port}.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
