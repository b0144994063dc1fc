"""`xai-lab data ...`: create, import, fetch, list and show datasets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from xai_lab.cli.common import check_size, comma_list, dataset_name, usage
from xai_lab.errors import DataError


def add_data_commands(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="create, import, fetch and list datasets",
                               description="Create, import, fetch and list datasets.")
    data_commands = data.add_subparsers(title="data commands", metavar="COMMAND")
    data.set_defaults(run=lambda args: usage(data))

    synth = data_commands.add_parser("synth", help="generate a synthetic radiograph-like set with lesion masks")
    synth.add_argument("--name", required=True, help="dataset name, e.g. synthetic")
    synth.add_argument("--n", type=int, default=2000, help="number of images (default 2000)")
    synth.add_argument("--size", type=int, default=128, help="image size in pixels (default 128)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--shortcut", type=float, default=None, metavar="RATE",
                       help="add a corner marker on RATE of lesion and 1-RATE of normal images (0.5 = uncorrelated)")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that name")
    synth.set_defaults(run=_run_synth)

    imported = data_commands.add_parser(
        "import", help="import a MedMNIST .npz, a single-split .npz or a folder of class subfolders (images or DICOM)")
    imported.add_argument("path", help="an .npz file, or a folder <class>/<images> (ImageFolder layout) or "
                                       "<class>/**/<DICOM files>")
    imported.add_argument("--name", required=True, help="dataset name")
    imported.add_argument("--classes", type=comma_list, default=None,
                          help="class names in label order, comma separated (known datasets need none)")
    imported.add_argument("--size", type=int, default=None,
                          help="resize images to SIZE x SIZE (folders default to 224; .npz files keep their size)")
    imported.add_argument("--seed", type=int, default=0, help="seed of the train/val/test split, where one is made")
    imported.add_argument("--channels", type=int, default=None, choices=[1, 3],
                          help="folders only: 1 = grayscale (default), 3 = colour")
    imported.add_argument("--allow-identifiable", action="store_true",
                          help="DICOM: import files that still carry identifying attributes (names, birth date, "
                               "institution, ...; see docs/data.md); only pixels, spacing and window are kept")
    imported.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that name")
    imported.set_defaults(run=_run_import)

    fetch = data_commands.add_parser("fetch", help="download an official MedMNIST file (network), verify, import")
    fetch.add_argument("dataset", help="MedMNIST name, e.g. pneumoniamnist")
    fetch.add_argument("--size", type=int, default=28, help="28, 64, 128 or 224 (default 28)")
    fetch.add_argument("--name", default=None, help="dataset name (default: the MedMNIST name, with _SIZE)")
    fetch.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that name")
    fetch.set_defaults(run=_run_fetch)

    listed = data_commands.add_parser("list", help="list datasets with their classes and split sizes")
    listed.add_argument("--json", action="store_true", help="print the dataset cards as JSON")
    listed.set_defaults(run=_run_list)

    show = data_commands.add_parser("show", help="print a dataset's card")
    show.add_argument("name", help="dataset name or folder")
    show.set_defaults(run=_run_show)


def _run_synth(args: argparse.Namespace) -> int:
    from xai_lab.data.synth import SynthConfig
    from xai_lab.workflows import synthesize_dataset

    config = SynthConfig(n=args.n, size=args.size, seed=args.seed, shortcut_rate=args.shortcut)
    print_dataset_card(synthesize_dataset(dataset_name(args.name), config, overwrite=args.overwrite).to_dict())
    return 0


def _run_import(args: argparse.Namespace) -> int:
    check_size(args.size)
    if not Path(args.path).exists():  # before the heavy imports below (torch: seconds on a busy machine)
        raise DataError(f"no such file or folder: {args.path}; check the path")
    from xai_lab.data.importers import import_dataset

    card = import_dataset(args.path, dataset_name(args.name), classes=args.classes, size=args.size, seed=args.seed,
                          channels=args.channels, overwrite=args.overwrite,
                          allow_identifiable=args.allow_identifiable)
    print_dataset_card(card.to_dict())
    return 0


def _run_fetch(args: argparse.Namespace) -> int:
    from xai_lab.data.fetch import fetch_medmnist

    card = fetch_medmnist(args.dataset, args.size, name=args.name and dataset_name(args.name), overwrite=args.overwrite)
    print_dataset_card(card.to_dict())
    return 0


def _run_list(args: argparse.Namespace) -> int:
    from xai_lab.data.storage import list_datasets
    from xai_lab.paths import data_root

    cards = list_datasets()
    if args.json:
        print(json.dumps([card.to_dict() for card in cards], indent=2))
        return 0
    if not cards:
        print(f"no datasets in {data_root()}; create one with 'xai-lab data synth --name synthetic' or 'xai-lab demo'")
        return 0
    print(f"{'name':<20} {'images':>7} {'size':>9} {'train/val/test':>16}  classes")
    for card in cards:
        per_split = "/".join(str(sum(card.counts[s].values())) for s in ("train", "val", "test"))
        size = "x".join(map(str, card.image_size))
        print(f"{card.name:<20} {card.n_images:>7} {size:>9} {per_split:>16}  {', '.join(card.class_names)}")
    return 0


def _run_show(args: argparse.Namespace) -> int:
    from xai_lab.data.storage import read_card, resolve_dataset_dir

    print(json.dumps(read_card(resolve_dataset_dir(args.name)).to_dict(), indent=2))
    return 0


def print_dataset_card(card: dict[str, Any]) -> None:
    counts = ", ".join(f"{split} {sum(by_class.values())}" for split, by_class in card["counts"].items())
    print(f"dataset '{card['name']}': {', '.join(card['class_names'])}; {counts}; "
          f"{card['image_size'][0]}x{card['image_size'][1]} px, {card['channels']} channel(s)")
    print(f"  source: {card['source'].get('kind')}; license: {card['license']}; split: {card['split_method']}")
    for note in card.get("notes", []):
        print(f"  note: {note}")
    print(f"  sha256 {card['sha256']}")
