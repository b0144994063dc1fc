"""`xai-lab model import`: bring a PyTorch model trained elsewhere (docs/models.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from xai_lab.cli.common import comma_list, usage
from xai_lab.errors import ConfigError


def add_model_commands(commands: argparse._SubParsersAction) -> None:
    model = commands.add_parser("model", help="bring a model trained elsewhere (model import)",
                                description="Models the lab did not train: a TorchScript file, or a factory "
                                            "function plus a state_dict. See docs/models.md.")
    verbs = model.add_subparsers(title="model commands", metavar="VERB")
    model.set_defaults(run=lambda args: usage(model))
    imports = verbs.add_parser(
        "import", help="import a PyTorch model: evaluate it, optionally recalibrate it, write its card",
        description="Wrap a network trained elsewhere in the lab's interface, evaluate it on --data with 95%% CIs and "
                    "write models/NAME with a card saying it was not trained by xai-lab. What the network expects is "
                    "declared on the command line or in a TOML file (--declare; default: FILE.toml beside the model).")
    source = imports.add_mutually_exclusive_group()
    source.add_argument("--torchscript", type=Path, metavar="FILE",
                        help="a TorchScript file (torch.jit.script(model).save(FILE)); it is code: needs --trust-code")
    source.add_argument("--factory", metavar="MODULE:FUNCTION",
                        help="an importable function that builds the network, e.g. torchvision.models:densenet121")
    imports.add_argument("--weights", type=Path, metavar="FILE", help="the factory network's state_dict (torch.save)")
    imports.add_argument("--trust-code", action="store_true", help="load a TorchScript file (it runs code)")
    imports.add_argument("--data", required=True, help="dataset the model is evaluated on, whose classes it predicts")
    imports.add_argument("--name", help="model name under models/ (default: the file's stem)")
    imports.add_argument("--declare", type=Path, metavar="TOML", help="the declaration file (keys as the options)")
    imports.add_argument("--classes", type=comma_list, help="class names in the order of the network's outputs")
    imports.add_argument("--finding", help="the class the study asks about (default: the dataset's second class)")
    imports.add_argument("--input-size", type=int, help="pixels (square) the network was trained at")
    imports.add_argument("--channels", type=int, help="channels the network reads: 1, or 3 (grey images repeated)")
    imports.add_argument("--mean", type=_floats, help="normalisation mean per channel, e.g. 0.485,0.456,0.406")
    imports.add_argument("--std", type=_floats, help="normalisation std per channel, e.g. 0.229,0.224,0.225")
    imports.add_argument("--outputs", help="what the network returns: logits (default), probabilities, binary_logit")
    imports.add_argument("--gradcam-layer", help="dotted module path Grad-CAM reads (default: the last convolution)")
    imports.add_argument("--factory-arg", action="append", default=[], metavar="KEY=VALUE",
                         help="an argument of the factory, VALUE read as JSON where it parses (num_classes=2)")
    imports.add_argument("--calibrate-on", metavar="DATASET",
                         help="refit temperature scaling and the threshold on this dataset's validation split")
    imports.add_argument("--threshold", type=float, default=0.5,
                         help="the model's own operating point on P(finding) when not recalibrated (default 0.5)")
    imports.add_argument("--overwrite", action="store_true", help="replace a model of the same name")
    imports.add_argument("--json", action="store_true", help="print the card as JSON")
    imports.set_defaults(run=_run_import)


def _run_import(args: argparse.Namespace) -> int:
    from xai_lab.cli.model import describe_model_card
    from xai_lab.model.importing import import_model

    card, folder = import_model(_request(args))
    print(json.dumps(card.to_json(), indent=2) if args.json else describe_model_card(card, folder))
    return 0


def _request(args: argparse.Namespace) -> Any:
    from xai_lab.model.importing import ImportRequest, read_declaration

    if args.torchscript is None and args.factory is None:
        raise ConfigError("name the model: --torchscript FILE --trust-code, or --factory MODULE:FUNCTION "
                          "--weights FILE")
    if args.factory is not None and args.weights is None:
        raise ConfigError("--factory needs --weights FILE (the state_dict saved with torch.save(model.state_dict()))")
    route = "torchscript" if args.torchscript is not None else "factory"
    source = args.torchscript if route == "torchscript" else args.weights
    declare = args.declare or (source.with_suffix(".toml") if source.with_suffix(".toml").is_file() else None)
    given = {"class_names": args.classes, "finding": args.finding, "input_size": args.input_size,
             "channels": args.channels, "mean": args.mean, "std": args.std, "outputs": args.outputs,
             "gradcam_layer": args.gradcam_layer, "factory": args.factory,
             "factory_kwargs": _factory_kwargs(args.factory_arg) if args.factory_arg else None}
    return ImportRequest(declaration=read_declaration(declare, given, route), source=source, data=args.data,
                         name=args.name or source.stem, calibrate_on=args.calibrate_on, threshold=args.threshold,
                         trust_code=args.trust_code, overwrite=args.overwrite)


def _floats(text: str) -> list[float]:
    try:
        return [float(part) for part in comma_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def _factory_kwargs(pairs: list[str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ConfigError(f"--factory-arg {pair!r} is not KEY=VALUE (e.g. num_classes=2)")
        try:
            kwargs[key] = json.loads(value)
        except ValueError:
            kwargs[key] = value
    return kwargs

