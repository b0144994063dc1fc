"""What a served study costs to start: the participant page's import, and `xai-lab serve` up to the
first drawn participant page, with the server's resident memory then.

    python benchmarks/serve_bench.py              # 3 runs each
    python benchmarks/serve_bench.py --runs 5

The served lab is the committed release fixture (`tests/data/release_lab.tar.gz`: a small prepared
study with participants mid-study), unpacked into a temporary lab home. Each run is a fresh process:
- "import participant page": `python -c "import xai_lab.ui.participant"`, wall time and peak RSS,
  and which heavy modules that import loaded;
- "serve to first page": `xai-lab serve --design t.toml` until a participant's page (a consent
  step) is drawn over Streamlit's websocket, and the resident memory of the server's process tree
  right after (sum of VmRSS over the serve process and its children, from /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURE = ROOT / "tests" / "data" / "release_lab.tar.gz"
HEAVY = ("torch", "captum", "torchvision", "sklearn", "scipy", "matplotlib")
IMPORT_PROBE = ("import sys, time; start = time.perf_counter(); import xai_lab.ui.participant; "
                f"print(time.perf_counter() - start); print(','.join(m for m in {HEAVY!r} if m in sys.modules))")


def import_cost(runs: int) -> tuple[list[float], float, str]:
    times, peaks, loaded = [], [], ""
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], cwd=ROOT, capture_output=True, text=True,
                             check=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}).stdout.splitlines()
        times.append(float(out[0]))
        loaded = out[1] if len(out) > 1 else ""
        peaks.append(max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
    return times, max(peaks) / 1024, loaded


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total / 1024


def serve_cost(home: Path, token: str) -> tuple[float, float]:
    from tests.support.local_server import free_port
    from tests.support.protocol_client import ProtocolClient

    port = free_port()
    env = {**os.environ, "XAI_LAB_HOME": str(home), "XAI_LAB_ADMIN_PASSWORD": "researcher-pass"}
    start = time.perf_counter()
    command = [sys.executable, "-m", "xai_lab.cli", "serve", "--design", "t.toml", "--port", str(port)]
    process = subprocess.Popen(command, cwd=home, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                with ProtocolClient("127.0.0.1", port, f"study=t&token={token}", timeout_s=120) as client:
                    if not client.keys():
                        raise RuntimeError("the participant page drew no widgets")
                    break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError("serve exited") from None
                time.sleep(0.2)
        elapsed = time.perf_counter() - start
        return elapsed, tree_rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    times, peak, loaded = import_cost(args.runs)
    print(f"{'measure':32} {'median s':>9} {'max s':>7} {'MB':>7}")
    print(f"{'import participant page':32} {statistics.median(times):9.2f} {max(times):7.2f} {peak:7.0f}"
          f"   loads: {loaded or 'none of ' + ', '.join(HEAVY)}")
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        with tarfile.open(FIXTURE) as archive:
            archive.extractall(home, filter="data")
        manifest = json.loads((home / "manifest.json").read_text())
        token = manifest["studies"]["t"]["participants"][0]["token"]  # left on its consent step
        results = [serve_cost(home, token) for _ in range(args.runs)]
    starts, memory = [r[0] for r in results], [r[1] for r in results]
    print(f"{'serve to first participant page':32} {statistics.median(starts):9.2f} {max(starts):7.2f} "
          f"{statistics.median(memory):7.0f}   (MB: resident, serve and its children)")


if __name__ == "__main__":
    main()
