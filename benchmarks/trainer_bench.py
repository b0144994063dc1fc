"""Trainer page under concurrency: one shared model behind a lock, or a private model copy per session?

    python benchmarks/trainer_bench.py            # the default synthetic model (built if absent)

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--renders", type=int, default=6, help="images each session explains")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

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
