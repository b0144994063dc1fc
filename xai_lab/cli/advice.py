"""`xai-lab advice import`: a vendor's outputs and heat maps, without its model (docs/models.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xai_lab.cli.common import usage


def add_advice_commands(commands: argparse._SubParsersAction) -> None:
    advice = commands.add_parser("advice", help="bring a vendor's outputs and maps without its model (advice import)",
                                 description="Advice sets: a vendor's probability (and decision) per case and its heat "
                                             "maps, used by a study with [cases] advice = \"imported:NAME\". See "
                                             "docs/models.md.")
    verbs = advice.add_subparsers(title="advice commands", metavar="VERB")
    advice.set_defaults(run=lambda args: usage(advice))
    imports = verbs.add_parser(
        "import", help="import a table of per-case vendor outputs (and a folder of maps) as an advice set",
        description="TABLE is a CSV or Parquet file with one row per case: case_id (or sop_instance_uid for a "
                    "dataset imported from DICOM), probability (of the finding, in [0, 1]) and optionally decision "
                    "(a class name or index). Maps are files named <case id>.png (greyscale), .npy or .npz, at any "
                    "resolution of the image's aspect ratio; they are resized to the image.")
    imports.add_argument("table", type=Path, help="the vendor's table (.csv or .parquet)")
    imports.add_argument("--data", required=True, help="the dataset the vendor's outputs are about")
    imports.add_argument("--name", required=True, help="the advice set's name (a study names it imported:NAME)")
    imports.add_argument("--maps", type=Path, metavar="DIR", help="folder of the vendor's heat maps, one per case")
    imports.add_argument("--threshold", type=float, default=0.5,
                         help="the vendor's operating point on P(finding) for rows without a decision (default 0.5)")
    imports.add_argument("--overwrite", action="store_true", help="replace an advice set of the same name")
    imports.add_argument("--json", action="store_true", help="print the card as JSON")
    imports.set_defaults(run=_run_import)


def _run_import(args: argparse.Namespace) -> int:
    from xai_lab.data.storage import load_dataset
    from xai_lab.explain.vendor import AdviceImport, describe_advice_set, import_advice
    from xai_lab.model.card import read_model_card

    folder = import_advice(AdviceImport(args.table, load_dataset(args.data), args.name, args.maps, args.threshold,
                                        args.overwrite))
    card = read_model_card(folder)
    print(json.dumps(card.to_json(), indent=2) if args.json else "\n".join(describe_advice_set(card, folder)))
    return 0
