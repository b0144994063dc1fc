"""Trainer page: how long each interaction of the trainer guide takes in Chromium, and, under
concurrency, one shared model behind a lock or a private model copy per session?

    python benchmarks/trainer_bench.py --interactions [--home LAB] [--repeats 3]
    python benchmarks/trainer_bench.py            # lock vs copy; the default synthetic model (built if absent)

--interactions: `xai-lab serve` on the demo study, then real headless Chromium at 1366 x 768 walks the
guide (tests/support/trainer_walk.py): open the page, move opacity and clipping, run the randomisation
check on Guided Grad-CAM and on Grad-CAM, go to the next test case, upload a 24 kB PNG. Each time runs
from the action to the end of the script run that redraws the maps (the goal: every one under 2 s on this
2-core machine). The first walk meets a freshly started server; later walks are new browser sessions on
the same server. Raw rows go to benchmarks/results/trainer_interactions.json.

The lock-vs-copy mode:

S sessions (threads, as Streamlit runs sessions) each explain R different test images with the
trainer page's default methods (Grad-CAM, saliency, integrated gradients), all at once:
- ``lock``: every session uses the one cached model; `attribute` takes turns
  (`xai_lab.model.locking.MODEL_LOCK`), which is what the lab ships;
- ``copy``: every session explains its own `copy.deepcopy` of the model with the lock disabled
  (only safe here because these three methods draw no random numbers).
Reported: wall seconds for all renders, renders per second, and copy / lock. Median of
``--repeats`` runs after a warm-up. Raw rows go to benchmarks/results/trainer_bench.json.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import threading
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
METHODS = ("gradcam", "saliency", "integrated_gradients")


def render_all(model, images: torch.Tensor, sessions: int, renders: int, private_copies: bool) -> float:
    from xai_lab.explain import attribution

    def session(number: int) -> None:
        own = copy.deepcopy(model) if private_copies else model
        for index in range(renders):
            image = images[(number * renders + index) % len(images)][None]
            for method in METHODS:
                attribution.attribute(own, image, 1, method)

    shared_lock = attribution.MODEL_LOCK
    if private_copies:
        attribution.MODEL_LOCK = contextlib.nullcontext()
    try:
        threads = [threading.Thread(target=session, args=(n,)) for n in range(sessions)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - started
    finally:
        attribution.MODEL_LOCK = shared_lock


def interactions(home: Path, repeats: int) -> list[dict]:
    import sys

    sys.path.insert(0, str(REPO / "tests"))  # the served app and the guide's walk are test helpers
    from playwright.sync_api import sync_playwright
    from support.chromium import CHROMIUM_FLAGS, VIEWPORT
    from support.local_server import served_app
    from support.trainer_walk import Walk, radiograph_png

    rows = []
    with served_app(REPO / "studies" / "demo.toml", home) as port, sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        for walk_number in range(repeats):
            walk = Walk(browser.new_context(viewport=VIEWPORT).new_page())
            walk.open(f"http://127.0.0.1:{port}/trainer")
            walk.slider("Overlay opacity", "ArrowRight", "opacity")
            walk.slider("Clip at percentile", "ArrowLeft", "clipping")
            walk.randomise("Guided Grad-CAM")
            walk.randomise("Grad-CAM")
            walk.next_case()
            walk.upload(radiograph_png(seed=walk_number))
            rows += [{"walk": walk_number, "interaction": name, "seconds": round(seconds, 3)}
                     for name, seconds in walk.seconds.items()]
            walk.page.context.close()
        browser.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", action="store_true", help="time the trainer guide's interactions")
    parser.add_argument("--home", type=Path, help="lab with the demo prepared (default: a new one, built first)")
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--renders", type=int, default=6, help="images each session explains")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.interactions:
        import os
        import subprocess
        import sys
        import tempfile

        home = args.home or Path(tempfile.mkdtemp(prefix="xai-trainer-bench-"))
        subprocess.run([sys.executable, "-m", "xai_lab.cli", "demo", "--no-serve", "--quiet"], check=True,
                       env={**os.environ, "XAI_LAB_HOME": str(home)}, stdout=subprocess.DEVNULL)
        rows = interactions(home, args.repeats)
        print(f"{'interaction':>26} " + " ".join(f"{'walk ' + str(n):>7}" for n in range(args.repeats)))
        for name in dict.fromkeys(row["interaction"] for row in rows):
            times = [row["seconds"] for row in rows if row["interaction"] == name]
            print(f"{name:>26} " + " ".join(f"{t:>7.2f}" for t in times))
        out = REPO / "benchmarks" / "results" / "trainer_interactions.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=2) + "\n")
        return

    from xai_lab import load_model
    from xai_lab.workflows import ensure_demo_assets

    dataset, _, folder = ensure_demo_assets(progress=False)
    model, _ = load_model(folder)
    images = dataset["test"].images[:64]
    render_all(model, images, 1, 1, private_copies=False)  # warm-up
    rows = []
    for sessions in (1, args.sessions):
        for variant in ("lock", "copy"):
            times = [render_all(model, images, sessions, args.renders, variant == "copy")
                     for _ in range(args.repeats)]
            seconds = statistics.median(times)
            rows.append({"sessions": sessions, "variant": variant, "renders": sessions * args.renders,
                         "seconds": round(seconds, 3), "renders_per_s": round(sessions * args.renders / seconds, 2),
                         "threads": torch.get_num_threads()})
    print(f"{'sessions':>8} {'variant':>7} {'renders':>7} {'seconds':>8} {'renders/s':>9}")
    for row in rows:
        print(f"{row['sessions']:>8} {row['variant']:>7} {row['renders']:>7} {row['seconds']:>8.2f} "
              f"{row['renders_per_s']:>9.2f}")
    for sessions in (1, args.sessions):
        lock, copied = (next(r["seconds"] for r in rows if r["sessions"] == sessions and r["variant"] == v)
                        for v in ("lock", "copy"))
        print(f"{sessions} session(s): copy / lock wall time = {copied / lock:.2f}")
    out = REPO / "benchmarks" / "results" / "trainer_bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
