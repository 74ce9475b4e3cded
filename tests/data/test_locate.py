"""The search order, the missing-data message, and a download that fails fast offline."""

from __future__ import annotations

import socket
import time
import pytest

from dlslab.data import fetch, locate
from dlslab.data.idx import write_idx
from dlslab.data.registry import DATASETS
from dlslab.errors import DataError


def _fake_mnist(root):
    import numpy as np

    folder = root / "mnist"
    folder.mkdir(parents=True)
    for f in DATASETS["mnist"].files:
        write_idx(folder / f.name, np.zeros((2, 2) if "labels" not in f.name else (2,), np.uint8))
    return folder


def test_data_dir_comes_before_env(tmp_path, monkeypatch) -> None:
    a, b = _fake_mnist(tmp_path / "a"), _fake_mnist(tmp_path / "b")
    monkeypatch.setenv("DLSLAB_DATA", str(tmp_path / "b"))
    assert locate.locate("mnist", tmp_path / "a").path == a
    loc = locate.locate("mnist")
    assert loc.path == b and loc.origin == "$DLSLAB_DATA"


def test_missing_dataset_names_files_folders_and_variable(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DLSLAB_DATA", str(tmp_path / "empty"))
    loc = locate.locate("cifar10")
    assert loc.status == "download"
    with pytest.raises(DataError) as err:
        locate.require("cifar10", download=False)
    msg = str(err.value)
    assert "cifar-10-python.tar.gz" in msg and "DLSLAB_DATA" in msg and str(tmp_path / "empty" / "cifar10") in msg


def test_offline_download_fails_fast_and_clearly(tmp_path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(DataError, match="could not download"):
        fetch.download(f"http://127.0.0.1:{port}/x.gz", tmp_path / "x.gz", timeout=3)
    assert time.monotonic() - t0 < 10
    assert not (tmp_path / "x.gz").exists()


def test_checksum_mismatch_discards_the_file(tmp_path) -> None:
    import http.server
    import threading

    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "f.bin").write_bytes(b"abc")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "srv"), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/f.bin"
        with pytest.raises(DataError, match="sha256"):
            fetch.download(url, tmp_path / "out.bin", ("0" * 64,))
        assert not (tmp_path / "out.bin").exists()
        good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        assert fetch.download(url, tmp_path / "out.bin", (good,)).read_bytes() == b"abc"
    finally:
        server.shutdown()


def test_unknown_dataset() -> None:
    from dlslab.errors import UsageError

    with pytest.raises(UsageError, match="valid: mnist"):
        locate.locate("imagenet")
