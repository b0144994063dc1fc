"""Where generated data, models and databases live.

Everything the lab generates sits under ``XAI_LAB_HOME`` (default: the current directory),
in ``data/<name>/`` and ``models/<name>/``. Nothing generated is committed to the repository.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from xai_lab.errors import ConfigError

HOME_ENV = "XAI_LAB_HOME"
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def lab_home() -> Path:
    """The root folder for generated files: ``$XAI_LAB_HOME`` or the current directory."""
    return Path(os.environ.get(HOME_ENV) or Path.cwd())


def data_root() -> Path:
    return lab_home() / "data"


def models_root() -> Path:
    return lab_home() / "models"


def check_name(name: str, what: str = "name") -> str:
    """Reject names that would escape the lab folders or be awkward on any file system."""
    if not _NAME_PATTERN.match(name or "") or name in {".", ".."} or ".." in name:
        raise ConfigError(
            f"invalid {what} {name!r}: use 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit (for example 'pneumonia')"
        )
    return name


def dataset_dir(name: str) -> Path:
    return data_root() / check_name(name, "dataset name")


def model_dir(name: str) -> Path:
    return models_root() / check_name(name, "model name")


def explanation_cache_dir(model_name: str) -> Path:
    """A model's explanation cache (`xai-lab explain precompute`, study preparation, the study UI)."""
    return lab_home() / "cache" / check_name(model_name, "model name")


def report_dir(study_id: str) -> Path:
    """Where `xai-lab analyze --study ID` writes by default; the researcher dashboard links the report there."""
    return lab_home() / "reports" / check_name(study_id, "study id")
