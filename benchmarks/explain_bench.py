"""Cost of each saliency method against the physical floor: forward + backward passes.

    python benchmarks/explain_bench.py               # the default synthetic model (built if absent)
    python benchmarks/explain_bench.py --model models/kermany --data kermany

For every method: seconds per image unbatched (batch_size=1) and batched (16 and 32 images per
call), and ratios to one forward+backward pass of the same model, measured in the same process:
- `x fb(1)`: explaining ONE image, unbatched, over one forward+backward of one image
  (Grad-CAM needs exactly one such pass);
- `x fb(32)`: explaining one image, unbatched, over one forward+backward of a batch of 32
  (integrated gradients with 32 steps in one internal batch needs exactly that).
The faster of batched and unbatched is reported beside the registry's CPU default
(`SaliencyMethod.cpu_batch_size`, set from this benchmark). Also: loading one cached
overlay (decision, map and PNG) from an `ExplanationCache`. Every time is the median of
`--repeats` runs after a warm-up. Raw rows go to benchmarks/results/explain_bench.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from timing import median_seconds

REPO = Path(__file__).resolve().parents[1]


def forward_backward(model, images: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        batch = images.clone().requires_grad_(True)
        model(batch)[:, 1].sum().backward()
    return run


def load_assets(model_arg: str | None, data_arg: str | None):
    from xai_lab import load_dataset, load_model
    from xai_lab.workflows import ensure_demo_assets

    if model_arg is None:
        dataset, _, folder = ensure_demo_assets(progress=False)
        model, card = load_model(folder)
        return model, card, dataset
    return (*load_model(model_arg), load_dataset(data_arg))


def bench_methods(model, images: torch.Tensor, repeats: int) -> tuple[dict, list[dict]]:
    from xai_lab.explain import METHODS, attribute

    floor = {"fb_1": median_seconds(forward_backward(model, images[:1]), repeats * 3),
             "fb_32": median_seconds(forward_backward(model, images[:32]), repeats)}
    rows = []
    for name in METHODS:
        one = median_seconds(lambda name=name: attribute(model, images[:1], 1, name, batch_size=1), repeats)
        # stochastic methods always run one image per call (each image seeded on its own)
        sizes = () if METHODS[name].stochastic else (16, 32)
        per_image = {size: median_seconds(lambda name=name, size=size: attribute(
            model, images[:size], 1, name, batch_size=size), max(1, repeats // 2)) / size for size in sizes}
        per_image = per_image or {1: one}
        best_batch = min(per_image, key=per_image.get)
        rows.append({"method": name, "unbatched_s": one, "batched16_s_per_image": per_image.get(16),
                     "batched32_s_per_image": per_image.get(32),
                     "cpu_default": "batched" if per_image[best_batch] < one else "unbatched",
                     "best_batch": best_batch if per_image[best_batch] < one else 1,
                     "x_fb1": one / floor["fb_1"], "x_fb32": one / floor["fb_32"],
                     "registry_cpu_batch": METHODS[name].cpu_batch_size})
        print(f"{name:22s} unbatched {one * 1000:8.1f} ms  batched {per_image[best_batch] * 1000:8.1f} ms/img "
              f"(batch {best_batch})  x fb(1) {rows[-1]['x_fb1']:6.2f}  x fb(32) {rows[-1]['x_fb32']:5.2f}  "
              f"measured best batch {rows[-1]['best_batch']}, registry CPU default {METHODS[name].cpu_batch_size}",
              flush=True)
    return floor, rows


def bench_cache(model, card, dataset, repeats: int) -> float:
    from xai_lab.explain.cache import ExplanationCache
    from xai_lab.explain.precompute import default_cases, precompute
    from xai_lab.explain.request import ExplanationRequest

    with tempfile.TemporaryDirectory() as folder:
        cache = ExplanationCache(Path(folder), card)
        case = default_cases(dataset, 1)
        request = ExplanationRequest.create("gradcam")
        precompute(model, dataset, cache, case, [request])

        def load() -> None:
            reader = ExplanationCache(Path(folder), card)  # as a fresh UI request would
            reader.load_prediction(case[0])
            reader.load_explanation(case[0], request).attribution.sum()
        return median_seconds(load, repeats * 5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: the demo's synthetic model)")
    parser.add_argument("--data", help="dataset of that model (required with --model)")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    if (args.model is None) != (args.data is None):
        parser.error("--model and --data go together")
    torch.manual_seed(0)
    model, card, dataset = load_assets(args.model, args.data)
    images = dataset["test"].images[:32]
    print(f"model {card.name}: input {model.spec.input_size} px, images {images.shape[-1]} px, "
          f"{torch.get_num_threads()} threads")
    floor, rows = bench_methods(model, images, args.repeats)
    print(f"floor: forward+backward of 1 image {floor['fb_1'] * 1000:.1f} ms, of 32 images "
          f"{floor['fb_32'] * 1000:.1f} ms")
    cache_load = bench_cache(model, card, dataset, args.repeats)
    print(f"cached overlay load (prediction + map + PNG decode): {cache_load * 1000:.1f} ms")
    out = REPO / "benchmarks" / "results" / "explain_bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": card.name, "floor_s": floor, "methods": rows,
                               "cache_load_s": cache_load}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
