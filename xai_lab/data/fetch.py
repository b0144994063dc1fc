"""Download official MedMNIST files (where a network is available) and verify their checksums.

Downloads go to ``XAI_LAB_HOME/data/.downloads/`` through a temporary file, so an interrupted
download is never mistaken for a complete one; a file whose MD5 differs from the official
value is deleted and reported. Tests never call this: it needs the network.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from xai_lab.data.importers import file_digests, import_dataset
from xai_lab.data.known import MEDMNIST, MEDMNIST_SIZES, KnownDataset
from xai_lab.data.records import DatasetCard
from xai_lab.errors import DataError
from xai_lab.paths import data_root


def fetch_medmnist(key: str, size: int = 28, name: str | None = None, overwrite: bool = False,
                   timeout: float = 60.0) -> DatasetCard:
    """Download MedMNIST dataset `key` at `size` px, verify it, and import it as dataset `name`."""
    known = known_medmnist(key, size)
    default_name = known.key if size == 28 else f"{known.key}_{size}"
    return import_dataset(download_verified(known, size, timeout), name or default_name, overwrite=overwrite)


def known_medmnist(key: str, size: int) -> KnownDataset:
    known = MEDMNIST.get(key.lower())
    if known is None:
        raise DataError(f"unknown MedMNIST dataset {key!r}; choose one of {', '.join(sorted(MEDMNIST))}")
    if not known.single_label:
        raise DataError(f"{known.key} is multi-label; xai-lab trains single-label classifiers, choose another")
    if size not in MEDMNIST_SIZES:
        raise DataError(f"--size must be one of {', '.join(map(str, MEDMNIST_SIZES))} for MedMNIST, got {size}")
    return known


def download_verified(known: KnownDataset, size: int, timeout: float = 60.0) -> Path:
    folder = data_root() / ".downloads"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (f"{known.key}.npz" if size == 28 else f"{known.key}_{size}.npz")
    expected = known.md5_by_size[size]
    if target.is_file() and file_digests(target)[1] == expected:
        return target
    url = known.url(size)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".part", delete=False) as partial:
        partial_path = Path(partial.name)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                shutil.copyfileobj(response, partial)
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            partial_path.unlink(missing_ok=True)
            raise DataError(f"could not download {url} ({error}); check the network, or download the file "
                            "by hand and run 'xai-lab data import FILE --name NAME'") from None
    actual = file_digests(partial_path)[1]
    if actual != expected:
        partial_path.unlink(missing_ok=True)
        raise DataError(f"the download of {url} has MD5 {actual}, not the official {expected}; it was deleted, "
                        "try again later")
    partial_path.replace(target)
    return target

