"""The packed format: exact round trips, measured sizes, and clear errors on bad files."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
import torch

from dlslab.compress.layers import bake
from dlslab.compress.lowrank import low_rank_factorise
from dlslab.compress.packed import (gaps_to_symbols, load_packed, pack_model, pack_state, read_packed,
                                    symbols_to_positions, unpack_state)
from dlslab.compress.prune import prune_magnitude
from dlslab.compress.quant import quantise_ptq
from dlslab.compress.share import share_weights
from dlslab.errors import DataError
from dlslab.models import build_model


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.is_floating_point():
        width = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        return torch.equal(a.view(width), b.view(width))
    return torch.equal(a, b)


@pytest.fixture
def compressed_lenet300() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("lenet300")
    prune_magnitude(model, {"fc1": 0.95, "fc2": 0.9, "fc3": 0.7})
    share_weights(model, {"fc1": 5, "fc2": 5, "fc3": 6}, bias_bits=5)
    return bake(model)


def test_pack_load_round_trips_bit_for_bit_and_the_size_is_measured(compressed_lenet300, tmp_path):
    path = tmp_path / "m.dlz"
    report = pack_model(compressed_lenet300, path, name="lenet300")
    assert report.file_bytes == path.stat().st_size
    assert report.ratio > 40  # 5% of fc1 at ~5 bits + ~6 bits of position each
    loaded, header = load_packed(path)
    assert header["model"] == "lenet300"
    for key, value in compressed_lenet300.state_dict().items():
        assert same_bits(value, loaded.state_dict()[key]), key
    x = torch.randn(5, 1, 28, 28)
    assert torch.equal(loaded(x), compressed_lenet300.eval()(x))
    fc1 = next(t for t in report.tensors if t.name == "fc1.weight")
    assert fc1.layout == "sparse" and fc1.codebook == 32 and abs(fc1.density - 0.05) < 1e-3


def test_huffman_is_smaller_than_fixed_width_codes(compressed_lenet300):
    huffman = pack_model(compressed_lenet300, None, name="lenet300")
    fixed = pack_model(compressed_lenet300, None, name="lenet300", entropy="fixed")
    assert huffman.file_bytes < fixed.file_bytes


def test_quantised_low_rank_model_with_structure_round_trips(tmp_path):
    torch.manual_seed(1)
    model = build_model("lenet5")
    dense = 4 * sum(p.numel() for p in model.parameters())
    ranks = low_rank_factorise(model, {"fc1": 20})
    quantise_ptq(model, 8)
    report = pack_model(model, tmp_path / "m.dlz", name="lenet5", structure={"lowrank": ranks},
                        reference_bytes=dense)
    assert report.dense_bytes == dense
    assert report.ratio > 20  # fc1 (93% of the weights) holds 15x fewer numbers, all at 8 bits or fewer
    loaded, _ = load_packed(tmp_path / "m.dlz")
    for key, value in model.state_dict().items():
        assert same_bits(value, loaded.state_dict()[key]), key


def test_any_state_dict_round_trips_including_integer_buffers():
    torch.manual_seed(2)
    model = build_model("judge-cnn")
    model.train()(torch.randn(8, 1, 28, 28))  # BatchNorm statistics and counters change
    state = model.state_dict()
    state["half"] = torch.randn(7).half()
    state["signed zero"] = torch.tensor([-0.0, 1.0, 0.0])
    blob, _ = pack_state(state, model="judge-cnn")
    back, _ = unpack_state(blob)
    assert back.keys() == state.keys()
    for key, value in state.items():
        expected = value + 0.0 if value.is_floating_point() else value  # -0.0 is stored as +0.0
        assert same_bits(expected, back[key]), key


def test_gap_symbols_with_escapes_round_trip():
    positions = np.array([0, 1, 2, 40, 41, 1000, 1001, 5000])
    for escape in (15, 255):
        symbols = gaps_to_symbols(positions, escape)
        assert symbols.max() <= escape
        assert np.array_equal(symbols_to_positions(symbols, escape), positions)


def test_truncated_corrupt_and_foreign_files_give_clear_errors(compressed_lenet300, tmp_path):
    path = tmp_path / "m.dlz"
    pack_model(compressed_lenet300, path, name="lenet300")
    blob = path.read_bytes()
    cases = {
        "truncated": (blob[: len(blob) - 100], "truncated"),
        "cut in the header": (blob[:20], "truncated"),
        "flipped payload byte": (blob[:-50] + bytes([blob[-50] ^ 0xFF]) + blob[-49:], "payload checksum"),
        "flipped header byte": (blob[:12] + bytes([blob[12] ^ 0x01]) + blob[13:], "header checksum"),
        "not ours": (b"PK\x03\x04" + blob[4:], "not a dlslab packed file"),
        "future version": (blob[:4] + bytes([9]) + blob[5:], "version 9"),
    }
    for name, (data, message) in cases.items():
        bad = tmp_path / f"{name}.dlz"
        bad.write_bytes(data)
        with pytest.raises(DataError, match=message):
            load_packed(bad)


def test_a_consistent_but_wrong_header_is_a_data_error(compressed_lenet300, tmp_path):
    blob, _ = pack_state(compressed_lenet300.state_dict(), model="lenet300", kwargs={"hidden": [200, 100]})
    (tmp_path / "m.dlz").write_bytes(blob)
    with pytest.raises(DataError, match="do not fit"):
        load_packed(tmp_path / "m.dlz")
    # a header that lies about a tensor's stream, with valid checksums
    hlen = struct.unpack_from("<I", blob, 5)[0]
    header = json.loads(zlib.decompress(blob[9:9 + hlen]))
    header["tensors"][0]["nnz"] += 1
    head = zlib.compress(json.dumps(header).encode())
    forged = blob[:5] + struct.pack("<I", len(head)) + head + struct.pack("<I", zlib.crc32(head)) + blob[13 + hlen:]
    (tmp_path / "f.dlz").write_bytes(forged)
    with pytest.raises(DataError):
        read_packed(tmp_path / "f.dlz")
