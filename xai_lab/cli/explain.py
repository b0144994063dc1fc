"""``xai-lab explain ...``: list methods, evaluate them on a model, precompute study overlays."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from xai_lab.cli.common import usage
from xai_lab.errors import ConfigError


def add_explain_commands(commands: argparse._SubParsersAction) -> None:
    explain = commands.add_parser("explain", help="saliency methods: list, evaluate, precompute study overlays",
                                  description="Saliency maps: list the methods, measure them, precompute overlays.")
    sub = explain.add_subparsers(title="explain commands", metavar="COMMAND")
    methods = sub.add_parser("methods", help="list the saliency methods and their parameters")
    methods.add_argument("--json", action="store_true", help="print one JSON object")
    methods.set_defaults(run=_run_methods)

    evaluate = sub.add_parser("evaluate", help="measure localisation, faithfulness, randomisation, repeatability",
                              description="Measure every method on test images; write CSV/markdown/HTML/JSON and "
                                          "record the chosen default method and its evidence in the model card.")
    _model_and_data(evaluate)
    evaluate.add_argument("--n", type=int, default=200, help="test images (default 200)")
    evaluate.add_argument("--randomisation-n", type=int, default=50,
                          help="images for the cascading randomisation check (default 50)")
    evaluate.add_argument("--repeat-model", help="a second model trained with another seed (repeatability)")
    evaluate.add_argument("--out", help="output folder (default: <model folder>/explanations)")
    evaluate.add_argument("--seed", type=int, default=0, help="sampling and method seed (default 0)")
    evaluate.add_argument("--no-card", action="store_true", help="do not write the evidence into the model card")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(run=_run_evaluate)

    precompute = sub.add_parser("precompute", help="cache predictions and maps for study cases",
                                description="Store per case the decision, calibrated confidence and each method's "
                                            "map; valid entries are kept, damaged ones recomputed.")
    _model_and_data(precompute)
    cases = precompute.add_mutually_exclusive_group(required=True)
    cases.add_argument("--cases", help="file of case ids (one per line, or a CSV with a case_id column)")
    cases.add_argument("--n", type=int, help="the first N test cases in a seeded random order")
    precompute.add_argument("--cache", help="cache folder (default: $XAI_LAB_HOME/cache/<model name>)")
    precompute.add_argument("--seed", type=int, default=0, help="case order and method seed (default 0)")
    precompute.add_argument("--json", action="store_true", help="print one JSON object")
    precompute.set_defaults(run=_run_precompute)
    explain.set_defaults(run=lambda args: usage(explain))


def _model_and_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder (or model name under models/)")
    parser.add_argument("--data", required=True, help="dataset name or folder the model was trained on")
    parser.add_argument("--methods", help="comma-separated methods (default: all; see 'xai-lab explain methods')")
    parser.add_argument("--external", action="store_true", help="allow another dataset with the same classes")


def _run_methods(args: argparse.Namespace) -> int:
    from xai_lab.explain import METHODS

    described = {name: method.describe() for name, method in METHODS.items()}
    if args.json:
        print(json.dumps(described))
        return 0
    for name, info in described.items():
        params = ", ".join(f"{key}={value['default']}" for key, value in info["parameters"].items()) or "-"
        print(f"{name:22s} {info['title']} ({info['reference']}); parameters: {params}")
    return 0


def _methods(text: str | None) -> list[str]:
    from xai_lab.explain import METHODS
    from xai_lab.explain.attribution import resolve_method

    if text is None:
        return list(METHODS)
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ConfigError(f"--methods is empty; choose from {', '.join(METHODS)}")
    for name in names:
        resolve_method(name)
    return names


def _load(args: argparse.Namespace):
    from xai_lab.data.storage import load_dataset
    from xai_lab.model.card import resolve_model_dir
    from xai_lab.model.storage import check_model_fits, load_model

    model, card = load_model(args.model)
    dataset = load_dataset(args.data)
    check_model_fits(card, dataset, external=args.external)
    return model, card, dataset, resolve_model_dir(args.model)


def _run_evaluate(args: argparse.Namespace) -> int:
    from xai_lab.explain.attribution import check_method_fits, methods_for
    from xai_lab.explain.evaluation import EvaluationConfig, evaluate_explanations
    from xai_lab.explain.report import card_evidence, write_report
    from xai_lab.model.storage import check_model_fits, load_model, update_model_card

    model, card, dataset, folder = _load(args)
    methods, cannot = methods_for(model, _methods(args.methods))
    if args.methods:
        for name in cannot:
            check_method_fits(model, name)  # asked for by name: refused in one line
    elif cannot:
        print(f"not evaluated: {', '.join(cannot)} (they hook the network's layers, which a TorchScript model "
              "hides; docs/models.md)", file=sys.stderr)
    config = EvaluationConfig(methods=tuple(methods), n=args.n, randomisation_n=args.randomisation_n, seed=args.seed)
    config.validate()
    repeat = None
    if args.repeat_model:
        repeat, repeat_card = load_model(args.repeat_model)
        check_model_fits(repeat_card, dataset, external=args.external)
    report = evaluate_explanations(model, dataset, config, model_name=card.name or folder.name,
                                   repeat_model=repeat, repeat_name=args.repeat_model,
                                   progress=None if args.json else lambda m: print(f"evaluating {m} ...",
                                                                                    file=sys.stderr))
    paths = write_report(report, Path(args.out) if args.out else folder / "explanations")
    if not args.no_card:
        update_model_card(folder, "explanations", card_evidence(report))
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print(paths["md"].read_text())
        print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 0


def _run_precompute(args: argparse.Namespace) -> int:
    from xai_lab.explain.cache import ExplanationCache
    from xai_lab.explain.precompute import default_cases, precompute, read_case_file
    from xai_lab.explain.request import ExplanationRequest
    from xai_lab.paths import explanation_cache_dir

    methods = _methods(args.methods)
    model, card, dataset, folder = _load(args)
    cases = read_case_file(Path(args.cases)) if args.cases else default_cases(dataset, args.n, args.seed)
    root = Path(args.cache) if args.cache else explanation_cache_dir(folder.name)
    requests = [ExplanationRequest.create(method, seed=args.seed) for method in methods]
    summary = precompute(model, dataset, ExplanationCache(root, card), cases, requests)
    result = {**summary.to_dict(), "cache": str(root), "methods": methods}
    print(json.dumps(result) if args.json else
          f"{summary.cases} cases: {summary.computed} explanations computed, {summary.reused} reused, in {root}")
    return 0
