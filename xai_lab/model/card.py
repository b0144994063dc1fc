"""A model folder's card, read without PyTorch: where a model lives and what its card says
(`ModelCard`, a typed record with a version).

The served pages and `xai-lab serve` check a study's model (the quality gate reads the card's
validation metrics) before any page needs the network itself; this module lets them do so without
loading torch. Writing cards and loading weights stay in `xai_lab.model.storage`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from xai_lab.errors import ModelError
from xai_lab.paths import check_name, model_dir

WEIGHTS_FILE = "weights.pt"
CARD_FILE = "model_card.json"
# A vendor's advice set (`xai-lab advice import`) lives in a model folder without weights: its card
# (architecture type ADVICE_SET) and the table it came from, as advice.csv or advice.parquet.
ADVICE_SET = "advice_set"
ADVICE_FILE = "advice.csv"
ADVICE_TABLES = (ADVICE_FILE, "advice.parquet")


def is_advice_set(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ADVICE_TABLES) and not (folder / WEIGHTS_FILE).is_file()


def write_model_folder(folder: Path, fill: Callable[[Path], None]) -> None:
    """Write a model folder atomically: `fill` writes into a temporary folder beside it, which then replaces
    `folder`, so a reader finds the old folder or the new one, never half of one."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        fill(staging)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def resolve_model_dir(path: str | Path) -> Path:
    folder = Path(path)
    if not (folder / CARD_FILE).is_file() and isinstance(path, str) and "/" not in path and "\\" not in path:
        named = model_dir(check_name(path, "model name"))
        folder = named if (named / CARD_FILE).is_file() else folder
    if not folder.exists():
        raise ModelError(f"no model folder at {folder}; train one with 'xai-lab train --data NAME' "
                         "or check the --model path")
    if not (folder / CARD_FILE).is_file() or not ((folder / WEIGHTS_FILE).is_file() or is_advice_set(folder)):
        raise ModelError(f"{folder} is not a model folder (it needs {CARD_FILE} and {WEIGHTS_FILE}); "
                         "point --model to a folder written by 'xai-lab train'")
    return folder


def read_model_card(folder: Path) -> ModelCard:
    try:
        raw = json.loads((folder / CARD_FILE).read_text())
    except (OSError, ValueError) as error:
        raise ModelError(f"the model card {folder / CARD_FILE} is unreadable ({error}); retrain the model") from None
    if not isinstance(raw, dict):
        raise ModelError(f"the model card {folder / CARD_FILE} is not a JSON object; retrain the model")
    return ModelCard.from_json(raw, str(folder / CARD_FILE))


# ------------------------------------------------------------------ the card as a record

CARD_VERSION = 1  # raised when a section's shape changes; a newer card is refused, not misread


@dataclass(frozen=True)
class CardDataset:
    """The dataset a model was trained on, by content hash (a model is refused on other data)."""

    name: str
    content_sha256: str
    class_names: list[str]
    channels: int
    card_sha256: str | None = None
    image_size: list[int] | None = None
    license: str | None = None


@dataclass(frozen=True)
class Preprocessing:
    input_size: int
    mean: list[float]
    std: list[float]
    resize: str = "antialiased bilinear"
    input: str = ""


@dataclass(frozen=True)
class Decision:
    rule: str
    threshold: float | None  # on P(finding), two classes only
    applies_to: str = ""


@dataclass(frozen=True)
class ModelCard:
    """`model_card.json` as a typed record. Sections whose shape is the evidence itself (metrics per split,
    calibration, training history, the explanation evaluation) stay mappings, read by key within them;
    what the lab acts on (dataset, preprocessing, decision, name, hashes) is typed. Top-level keys a later
    release adds are kept (`extra`) and written back, so an older release never drops them."""

    name: str
    dataset: CardDataset
    architecture: dict[str, Any]
    preprocessing: Preprocessing
    decision: Decision
    metrics: dict[str, dict[str, Any]]
    calibration: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    intended_use: str = ""
    not_for_clinical_use: bool = True
    created_at: str = ""
    weights_sha256: str | None = None
    explanations: dict[str, Any] | None = None
    card_version: int = CARD_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def split_metrics(self, split: str) -> dict[str, Any]:
        """The card's metrics on one split ({} when the card has none)."""
        return dict(self.metrics.get(split) or {})

    def with_section(self, name: str, content: Any) -> ModelCard:
        """The card with one top-level section replaced (e.g. the explanation evidence)."""
        return ModelCard.from_json({**self.to_json(), name: content})

    def to_json(self) -> dict[str, Any]:
        content = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        content = {key: asdict(value) if is_dataclass(value) else value for key, value in content.items()}
        return {**self.extra, **content}

    @classmethod
    def from_json(cls, raw: dict[str, Any], source: str = "model card") -> ModelCard:
        version = raw.get("card_version", 1)
        if not isinstance(version, int) or version > CARD_VERSION:
            raise ModelError(f"{source} has card version {version!r}, newer than this xai-lab reads "
                             f"({CARD_VERSION}); upgrade xai-lab")
        known = {f.name for f in fields(cls)} - {"extra"}
        typed = {"dataset", "preprocessing", "decision"}
        try:
            plain = {key: value for key, value in raw.items() if key in known - typed}
            return cls(**plain, dataset=_section(CardDataset, raw["dataset"]),
                       preprocessing=_section(Preprocessing, raw["preprocessing"]),
                       decision=_section(Decision, raw["decision"]),
                       extra={key: value for key, value in raw.items() if key not in known})
        except (KeyError, TypeError) as error:
            raise ModelError(f"{source} lacks what a model card needs ({error}); retrain the model") from None


def _section(cls: type, raw: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{key: value for key, value in raw.items() if key in names})
