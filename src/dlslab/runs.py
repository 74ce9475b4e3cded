"""A run is a folder: config.yaml, env.json, log.jsonl, metrics.json, report.json,
artifacts (plots, images, audio), checkpoints/ and report.html.

Studies add what they found through a `Run`: tables, figures, image grids, audio and
computed conclusions. Each is recorded in `report.json` under a key, so a resumed run that
adds the same item again replaces it instead of duplicating it. All writes are atomic.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from dlslab import atomic
from dlslab.errors import BadFileError, UnsafeFileError


@dataclass
class Run:
    """A run folder and what the study records into it."""

    dir: Path
    study: str
    cfg: Any
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    resumed: bool = False  # True when this process picked up an interrupted run
    quiet: bool = False
    data_dir: Path | None = None  # --data-dir: searched first for datasets
    _items: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.dir = Path(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        report = self.dir / "report.json"
        if report.exists():
            try:
                self._items = json.loads(report.read_text())["items"]
            except (ValueError, KeyError):
                self._items = []

    # --- console and log ---------------------------------------------------------------

    def info(self, message: str) -> None:
        """A line for the person watching (stderr, so stdout keeps the `run:` contract)."""
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def log(self, **record: Any) -> None:
        """Append one JSON line to log.jsonl (an epoch, a step group, an event)."""
        record.setdefault("time", round(time.time(), 3))
        line = json.dumps(record, default=atomic._json_default)
        atomic.append_text(self.dir / "log.jsonl", line + "\n")

    # --- artifacts ------------------------------------------------------------------------

    def path(self, name: str) -> Path:
        """Where artifact `name` lives in this run (parent folders are created)."""
        p = self.dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def checkpoint_dir(self) -> Path:
        d = self.dir / "checkpoints"
        d.mkdir(exist_ok=True)
        return d

    def _add(self, item: dict[str, Any]) -> None:
        key = item["key"]
        self._items = [i for i in self._items if i["key"] != key] + [item]
        atomic.write_json(self.dir / "report.json", {"items": self._items})

    def answer(self, text: str) -> None:
        """The study's answer to its question in one or two sentences, computed from the
        numbers. The report and the index open with it; metrics.json keeps it as `answer`."""
        self._add({"kind": "answer", "key": "answer", "title": "Answer", "text": text})

    def target(self, metric: str, value: float, *, at_least: float | None = None,
               at_most: float | None = None, anchor: str = "") -> bool:
        """A headline number checked against its target (`at_least` / `at_most`), with the
        published figure it is measured against (`anchor`). Returns whether it is met."""
        if (at_least is None) == (at_most is None):
            raise ValueError("give exactly one of at_least / at_most")
        met = value >= at_least if at_least is not None else value <= at_most  # type: ignore[operator]
        goal = f">= {at_least:g}" if at_least is not None else f"<= {at_most:g}"
        self._add({"kind": "target", "key": f"target:{metric}", "title": metric, "value": float(value),
                   "goal": goal, "met": bool(met), "anchor": anchor})
        return bool(met)

    def test_data(self, *arrays: Any) -> str:
        """Record a fingerprint (sha256) of the test data the run is scored on, so that a
        comparison of runs can warn when they were scored on different data."""
        import hashlib

        digest = hashlib.sha256()
        for a in arrays:
            arr = np.ascontiguousarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a))
            digest.update(f"{arr.dtype}{arr.shape}".encode())
            digest.update(arr.tobytes())
        self._add({"kind": "test_data", "key": "test_data", "title": "test data", "sha256": digest.hexdigest()})
        return digest.hexdigest()

    def add_text(self, title: str, text: str, *, key: str | None = None) -> None:
        """A paragraph of findings. Compute it from results; never type conclusions in."""
        self._add({"kind": "text", "key": key or f"text:{title}", "title": title, "text": text})

    def add_table(self, title: str, rows: list[dict[str, Any]], *, key: str | None = None,
                  caption: str = "", columns: list[str] | None = None) -> None:
        """A table: a list of rows, each a dict column -> value (numbers are formatted)."""
        columns = columns or list(dict.fromkeys(k for r in rows for k in r))
        self._add({"kind": "table", "key": key or f"table:{title}", "title": title,
                   "caption": caption, "columns": columns,
                   "rows": [{c: r.get(c) for c in columns} for r in rows]})

    def add_figure(self, fig: Any, name: str, *, title: str, caption: str = "") -> Path:
        """Save a matplotlib figure as PNG and add it to the report; the figure is closed."""
        import matplotlib.pyplot as plt

        if not name.endswith(".png"):
            name += ".png"
        path = self.path(name)
        atomic.write_with(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
        plt.close(fig)
        self._add({"kind": "image", "key": f"image:{name}", "title": title, "caption": caption,
                   "src": name})
        return path

    def add_image_grid(self, images: torch.Tensor | np.ndarray, name: str, *, title: str,
                       nrow: int = 8, caption: str = "", scale: int = 2) -> Path:
        """A grid of images (N, C, H, W) or (N, H, W) with values in [0, 1] or uint8."""
        from dlslab.report.plots import image_grid, save_png

        grid = image_grid(images, nrow=nrow)
        if not name.endswith(".png"):
            name += ".png"
        path = self.path(name)
        save_png(path, grid, scale=scale)
        self._add({"kind": "image", "key": f"image:{name}", "title": title, "caption": caption,
                   "src": name})
        return path

    def add_audio(self, wave: np.ndarray | torch.Tensor, sample_rate: int, name: str, *,
                  title: str, caption: str = "", row: str | None = None, column: str | None = None) -> Path:
        """Write a mono wav (16-bit PCM) and add an <audio> player for it. Players given a
        `row` (an utterance) and a `column` (a system: noisy, clean, a model) are shown as one
        grid, a row per utterance and a column per system."""
        import io

        import soundfile as sf

        wave = np.asarray(wave.detach().cpu() if isinstance(wave, torch.Tensor) else wave,
                          dtype=np.float32).reshape(-1)
        peak = float(np.max(np.abs(wave))) if wave.size else 0.0
        if peak > 1.0:  # keep the waveform's shape; clipping would add distortion
            wave = wave / peak
        if not name.endswith(".wav"):
            name += ".wav"
        buf = io.BytesIO()
        sf.write(buf, wave, int(sample_rate), format="WAV", subtype="PCM_16")
        path = self.path(name)
        atomic.write_bytes(path, buf.getvalue())
        self._add({"kind": "audio", "key": f"audio:{name}", "title": title, "caption": caption,
                   "src": name, "row": row, "column": column})
        return path

    def items(self) -> list[dict[str, Any]]:
        return list(self._items)

    # --- cached steps -------------------------------------------------------------------------

    def cached(self, name: str, compute: Any) -> Any:
        """Run `compute()` once per run; its result (tensors, numbers, lists, dicts of those)
        is saved in checkpoints/ and returned from there when the run resumes."""
        path = self.checkpoint_dir / f"{name}.step.pt"
        if path.exists():
            return safe_torch_load(path)
        value = compute()
        atomic.torch_save(path, value)
        return value


MAX_CHECKPOINT_BYTES = 16 << 30  # a checkpoint larger than this is not read


def safe_torch_load(path: str | Path, map_location: Any = "cpu") -> Any:
    """torch.load with weights_only=True: tensors and plain containers only, never code.
    Only torch's zip format with uncompressed entries is read (what torch.save writes), so
    loading takes memory in proportion to the file's size."""
    import pickle

    path = Path(path)
    _check_archive(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeFileError(
            f"{path}: refused to load: {_unsafe_reason(str(exc))}. "
            "dlslab's own checkpoints hold only tensors and plain values; only load those."
        ) from None
    except MemoryError:
        raise
    except Exception as exc:  # torch's reader fails in many ways on a damaged file; all mean the same
        raise BadFileError(f"{path}: not a readable checkpoint (truncated or corrupt: "
                           f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}). "
                           "Delete it to start that step again.") from None


def _check_archive(path: Path) -> None:
    """The file is a zip archive of stored (uncompressed) entries that fit in its size."""
    import struct
    import zipfile

    size = atomic.checked_size(path, MAX_CHECKPOINT_BYTES, "a checkpoint")
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except OSError as exc:
        raise BadFileError(f"{path}: cannot read the checkpoint ({exc.strerror})") from None
    except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError, struct.error) as exc:
        raise BadFileError(f"{path}: not a readable checkpoint (truncated or corrupt, or not written by "
                           f"torch.save: {exc}). Delete it to start that step again.") from None
    packed = [e.filename for e in entries if e.compress_type != zipfile.ZIP_STORED]
    if packed or sum(e.file_size for e in entries) > size:
        raise BadFileError(f"{path}: not a checkpoint written by torch.save (its entries are compressed "
                           f"or larger than the file: {', '.join(packed[:3])}); refused unread")


def _unsafe_reason(message: str) -> str:
    """What torch's refusal names (a Python global such as posix.system), without its advice."""
    import re

    found = re.search(r"GLOBAL ([\w.]+)", message)
    if found:
        return (f"it names the Python object {found.group(1)}, which loading would import and call: "
                "it could run any code")
    return "it holds something other than tensors and plain values, or is corrupt"


def _describe(obj: Any) -> str:
    """What a loaded checkpoint is, in a few words (for wrong-kind messages)."""
    if isinstance(obj, torch.Tensor):
        return f"a single tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, dict):
        if not obj:
            return "an empty dict"
        keys = list(obj)
        shown = ", ".join(repr(k) for k in keys[:6]) + (", ..." if len(keys) > 6 else "")
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return f"a plain state dict of {len(keys)} tensors ({shown})"
        return f"a dict with keys {shown}"
    if isinstance(obj, (list, tuple)):
        return f"a {type(obj).__name__} of {len(obj)} items"
    return f"a {type(obj).__name__}"


def expect_checkpoint(obj: Any, path: str | Path, *, expected: str, keys: Iterable[str]) -> dict[str, Any]:
    """`obj`, a loaded checkpoint, if it is a dict holding `keys`; otherwise BadFileError
    saying what the file holds and what was expected (`expected`: e.g. "a denoiser saved by
    `dlslab denoise train`")."""
    keys = list(keys)
    if isinstance(obj, dict) and all(k in obj for k in keys):
        return obj
    raise BadFileError(f"{path}: this file is {_describe(obj)}, not {expected} "
                       f"(a dict with {', '.join(map(repr, keys))})")
