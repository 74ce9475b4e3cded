"""Downloads with a progress bar, a timeout and a sha256 check, written atomically."""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

from dlslab import atomic
from dlslab.data.registry import Dataset, DataFile
from dlslab.errors import DataError

TIMEOUT_S = float(os.environ.get("DLSLAB_DOWNLOAD_TIMEOUT", "20"))


def download(url: str, dest: Path, expected_sha256: tuple[str, ...] = (), timeout: float = TIMEOUT_S) -> Path:
    """Fetch `url` to `dest`. Fails fast (timeout) and clearly when there is no network."""
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, atomic.atomic_open(dest, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                          disable=not sys.stderr.isatty(), transient=True) as bar:
                task = bar.add_task(f"downloading {dest.name}", total=total)
                while block := resp.read(1 << 20):
                    out.write(block)
                    h.update(block)
                    bar.advance(task, len(block))
            if expected_sha256 and h.hexdigest() not in expected_sha256:
                raise DataError(f"{url}: downloaded file has sha256 {h.hexdigest()}, expected "
                                f"{expected_sha256[0]}; the file was discarded. Try again later.")
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"could not download {url} ({reason}); this machine may be offline. "
                        f"Fetch the file by hand and put it at {dest}") from None
    return dest


def fetch_dataset(ds: Dataset, folder: Path) -> Path:
    for f in ds.files:
        target = folder / f.name
        if not target.exists():
            print(f"dlslab: downloading {f.url}", file=sys.stderr)
            download(f.url, target, _accepted(f))  # type: ignore[arg-type]
    return folder


def _accepted(f: DataFile) -> tuple[str, ...]:
    # files checked by decompressed content (content_md5) accept any gzip of it
    return () if f.content_md5 else f.sha256
