"""Where datasets are looked for, in order: --data-dir, $DLSLAB_DATA, the user cache
(~/.cache/dlslab, or $XDG_CACHE_HOME/dlslab), known system install paths (Debian's
dataset packages), and finally a download from the canonical address."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from dlslab.data.registry import DATASETS, Dataset
from dlslab.errors import DataError, UsageError


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dlslab"


def search_roots(data_dir: str | Path | None = None) -> list[tuple[str, Path]]:
    """(label, root) pairs in search order; a dataset lives in root/<dataset folder>."""
    roots: list[tuple[str, Path]] = []
    if data_dir:
        roots.append(("--data-dir", Path(data_dir)))
    if os.environ.get("DLSLAB_DATA"):
        roots.append(("$DLSLAB_DATA", Path(os.environ["DLSLAB_DATA"])))
    roots.append(("user cache", cache_dir()))
    return roots


def get_dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    return DATASETS[name]


@dataclass
class Location:
    """Where a dataset was found (or how it will be had)."""

    dataset: Dataset
    status: str  # found | download | built | package | missing | absent (optional, not found)
    path: Path | None = None
    origin: str = ""  # which search root, or the URL

    def describe(self) -> str:
        if self.status == "found":
            return f"found in {self.path} ({self.origin})"
        if self.status == "download":
            return f"not on disk; will be downloaded from {self.origin} into {self.path}"
        if self.status == "built":
            return f"built locally: {self.dataset.note}"
        if self.status == "package":
            return f"ships with an installed package: {self.dataset.note}"
        if self.status == "absent":
            return f"not found (optional: {self.dataset.note or 'used when present'})"
        return "MISSING: " + missing_message(self.dataset, None)


def _complete(folder: Path, ds: Dataset) -> bool:
    if not folder.is_dir():
        return False
    return all((folder / f.name).is_file() for f in ds.files) if ds.files else any(folder.iterdir())


def locate(name: str, data_dir: str | Path | None = None) -> Location:
    """Find dataset `name` without reading or downloading it."""
    ds = get_dataset(name)
    if ds.kind == "built":
        return Location(ds, "built")
    if ds.kind == "package":
        return Location(ds, "package")
    for label, root in search_roots(data_dir):
        folder = root / ds.folder
        if _complete(folder, ds):
            return Location(ds, "found", folder, label)
    for system in ds.system_paths:
        if _complete(Path(system), ds):
            return Location(ds, "found", Path(system), "system install")
    if ds.kind == "optional":
        return Location(ds, "absent")
    if all(f.url for f in ds.files):
        return Location(ds, "download", cache_dir() / ds.folder, ds.files[0].url.rsplit("/", 1)[0] + "/")
    return Location(ds, "missing")


def missing_message(ds: Dataset, data_dir: str | Path | None, reason: str = "") -> str:
    searched = [str(root / ds.folder) for _, root in search_roots(data_dir)] + list(ds.system_paths)
    files = ", ".join(f.name for f in ds.files)
    urls = "; ".join(f.url for f in ds.files if f.url)
    msg = (f"dataset {ds.name!r} ({ds.title}) is not available{': ' + reason if reason else ''}. "
           f"Put the files {files} in a folder named {ds.folder!r} under a data root: "
           f"pass --data-dir ROOT or set DLSLAB_DATA=ROOT (searched: {', '.join(searched)}).")
    if urls:
        msg += f" They can be fetched from: {urls}"
    if ds.note:
        msg += f" ({ds.note})"
    return msg


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def require(name: str, data_dir: str | Path | None = None, *, download: bool = True) -> Path:
    """The folder holding dataset `name`, downloading it if allowed; DataError otherwise."""
    loc = locate(name, data_dir)
    if loc.status == "found":
        return loc.path  # type: ignore[return-value]
    if loc.status == "download" and download:
        from dlslab.data.fetch import fetch_dataset

        return fetch_dataset(loc.dataset, loc.path)  # type: ignore[arg-type]
    raise DataError(missing_message(loc.dataset, data_dir))
