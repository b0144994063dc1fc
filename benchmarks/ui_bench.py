"""UI latency under load: N simulated participants answering trials on a served app at the same time.

    python benchmarks/ui_bench.py                       # N = 10 and 20, the demo study
    python benchmarks/ui_bench.py --participants 5,10,20 --think 0

What is measured: for every decision click, the time from sending the answer over the app's
websocket to receiving `script_finished` of the run that draws the next screen (the answer
recorded, the next step resumed, every element of the new screen delivered) - what a
participant waits for after clicking. The participants are `ProtocolClient`s (Streamlit's own
protocol, no browser), so the numbers are the server's, not Chromium's rendering; one
process, loopback only, bounded to the N given. Each participant first gets through consent,
profile and instructions via the study API, then answers every practice, trial and attention
step through the app with a think time drawn uniformly from [0.5, 1.5] x --think seconds
(people look at a radiograph for seconds; --think 0 is a saturation test).

--viewer-report also sends, on every trial screen before the slider is moved, the report the
viewer's browser code sends once the image is drawn (viewport, zero time away): what that extra
rerun per step costs is its own line ("viewer report"), and the decision latency is measured
with it in the load.

The goal in the UI issue: p95 <= 300 ms at N = 20 on the project's 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the served app and protocol client are test helpers (tests/support)
DESIGN = REPO / "studies" / "demo.toml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", default="10,20", help="comma-separated N values (default 10,20)")
    parser.add_argument("--think", type=float, default=1.0, help="mean think time between answers, s (default 1)")
    parser.add_argument("--viewer-report", action="store_true",
                        help="send the viewer's first report on every trial screen, as a browser does")
    parser.add_argument("--home", default=None, help="lab home with the demo assets (default: a temporary one, "
                                                     "built first, about 2 minutes)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.participants.split(",")]
    home = Path(args.home or tempfile.mkdtemp(prefix="xai-ui-bench-"))
    os.environ["XAI_LAB_HOME"] = str(home)
    subprocess.run([sys.executable, "-m", "xai_lab.cli", "demo", "--quiet", "--no-serve"], check=True,
                   stdout=subprocess.DEVNULL)
    print(f"ui_bench: demo study in {home}; {os.cpu_count()} CPUs; think time {args.think} s")
    print(f"{'N':>4} {'what':>14} {'count':>8} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for n in sizes:
        measured = run_load(home, n, args.think, args.viewer_report)
        for what, latencies in measured.items():
            if latencies:
                print_row(n, what, latencies)
    return 0


def print_row(n: int, what: str, latencies: list[float]) -> None:
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    print(f"{n:>4} {what:>14} {len(ordered):>8} {statistics.median(ordered) * 1000:>8.0f} {p95 * 1000:>8.0f} "
          f"{ordered[-1] * 1000:>8.0f}", flush=True)


def run_load(home: Path, n: int, think: float, viewer_report: bool) -> dict[str, list[float]]:
    from support.local_server import served_app

    database = f"sqlite:///{home}/ui-bench-{n}-{int(time.time())}.db"
    tokens = _ready_participants(database, n)
    latencies: dict[str, list[float]] = {"answer": [], "viewer report": []}
    errors: list[BaseException] = []
    lock = threading.Lock()
    with served_app(DESIGN, home, database=database) as port:
        def participant(token: str, seed: int) -> None:
            try:
                measured = answer_all(port, token, think, random.Random(seed), viewer_report)
                with lock:
                    for what, values in measured.items():
                        latencies[what].extend(values)
            except BaseException as error:  # reported after the run; a bench must not hide failures
                errors.append(error)

        threads = [threading.Thread(target=participant, args=(token, i)) for i, token in enumerate(tokens)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} participant(s) failed; first: {errors[0]!r}")
    return latencies


def _ready_participants(database: str, n: int) -> list[str]:
    """Enrol n participants and take them through consent, profile and instructions (study API)."""
    from xai_lab.study.cases import load_case_set
    from xai_lab.study.design_file import load_design
    from xai_lab.study.service import StudyService

    design = load_design(DESIGN)
    service = StudyService.open(design, load_case_set(design), url=database)
    tokens = []
    for i in range(n):
        token = service.enrol()
        step = service.resume(token)
        step = service.submit(token, step.key, {"agree": True}, f"c{i}")
        profile = {name: options[i % len(options)] for name, options in step.content["fields"].items()}
        step = service.submit(token, step.key, profile, f"p{i}")
        service.submit(token, step.key, {}, f"i{i}")
        tokens.append(token)
    return tokens


# What the viewer reports once the image is drawn (xai_lab/ui/viewer/viewer.js): nothing done yet,
# no time away, a 1366 x 768 laptop's viewport
FIRST_VIEWER_REPORT = {"zoom_actions": 0, "pan_actions": 0, "window_changes": 0, "resets": 0, "max_zoom": 1,
                       "window": "Standard", "hidden_ms": 0, "blurred_ms": 0, "viewport_width": 1366,
                       "viewport_height": 657}


def answer_all(port: int, token: str, think: float, rng: random.Random, viewer_report: bool
               ) -> dict[str, list[float]]:
    from support.protocol_client import ProtocolClient

    latencies: dict[str, list[float]] = {"answer": [], "viewer report": []}
    with ProtocolClient("127.0.0.1", port, f"study=demo&token={token}") as client:
        while True:
            decide = client.keys("decide:")
            if decide and viewer_report:
                viewer = client.keys("viewer:")[0]
                latencies["viewer report"].append(client.set_value(viewer, {"activity": FIRST_VIEWER_REPORT}))
            time.sleep(think * rng.uniform(0.5, 1.5))
            attention = client.keys("attention:")
            if decide:
                step_key = decide[0].split(":", 1)[1].rsplit(":", 1)[0]
                client.set_value(f"confidence:{step_key}", [rng.randint(55, 95)])
                latencies["answer"].append(client.click(rng.choice(client.keys("decide:"))))
            elif attention:
                latencies["answer"].append(client.click(attention[0]))
            else:
                return latencies  # past the trials (peer rating next)


if __name__ == "__main__":
    sys.exit(main())
