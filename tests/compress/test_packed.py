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
from dlslab.errors import BadFileError, DataError
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


def _forge(header: dict, payload: bytes = b"") -> bytes:
    """A packed file with this header and payload and valid checksums."""
    head = zlib.compress(json.dumps(header).encode(), 9)
    return (b"DLSZ" + struct.pack("<BI", 1, len(head)) + head + struct.pack("<I", zlib.crc32(head))
            + payload + struct.pack("<I", zlib.crc32(payload)))


def _header(**tensor) -> dict:
    record = {"name": "w", "shape": [32768, 32768], "dtype": "float32", "layout": "sparse", "nnz": 0,
              "gaps": {"escape": 255, "coding": "fixed", "count": 0, "bytes": 0},
              "values": {"dtype": "float32"}, "streams": [0, 0]} | tensor
    return {"format": "dlslab-packed", "model": None, "kwargs": {}, "structure": {}, "meta": {},
            "payload_bytes": sum(record["streams"]) if isinstance(record.get("streams"), list) else 0,
            "tensors": [record]}


def test_a_tiny_file_claiming_a_huge_tensor_is_refused_before_decoding(tmp_path):
    # an all-zero sparse tensor costs no payload bits, so only the size budget can stop it
    path = tmp_path / "big.dlz"
    path.write_bytes(_forge(_header()))
    assert path.stat().st_size < 250
    with pytest.raises(BadFileError, match=r"big.dlz: the header describes 4,294,967,296 bytes of tensors .*"
                                            r"'w', shape \[32768, 32768\]"):
        read_packed(path)
    # the same tensor at an honest size decodes
    small, _ = unpack_state(_forge(_header(shape=[1024, 1024])))
    assert small["w"].shape == (1024, 1024) and not small["w"].any()


def test_a_zlib_bomb_header_is_refused_without_inflating_it(tmp_path):
    deflate = zlib.compressobj(9)
    head = deflate.compress(b'{"format": "dlslab-packed", "meta": {"pad": "')
    for _ in range(300):  # 300 MB of padding deflate to about 300 KB
        head += deflate.compress(b" " * (1 << 20))
    head += deflate.compress(b'"}}') + deflate.flush()
    path = tmp_path / "bomb.dlz"
    path.write_bytes(b"DLSZ" + struct.pack("<BI", 1, len(head)) + head + struct.pack("<I", zlib.crc32(head))
                     + struct.pack("<I", zlib.crc32(b"")))
    assert path.stat().st_size < 400_000
    with pytest.raises(BadFileError, match="bomb.dlz: the header inflates to more than 4,194,304 bytes"):
        read_packed(path)


def _without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


@pytest.mark.parametrize("header, message", [
    ([1, 2], "the header must be an object"),
    (_without(_header(), "tensors"), "the header lacks tensors"),
    (_header() | {"extra": 1}, "unknown field.*extra"),
    (_header() | {"tensors": 5}, "tensors must be a list"),
    (_header() | {"payload_bytes": True}, "payload_bytes must be a non-negative integer"),
    (_header() | {"format": "zip"}, "format must be"),
    (_header() | {"tensors": [{"shape": [1]}]}, "tensor record 0 lacks dtype, layout, name, streams"),
    (_header(shape=[-1, 4]), r"shape must be a list of at most 8 non-negative integers, not \[-1, 4\]"),
    (_header(shape="ab"), "shape must be a list"),
    (_header(shape=[2] * 9), "shape must be a list of at most 8"),
    (_header(dtype="complex64"), "dtype must be one of float32"),
    (_header(dtype=["float32"]), "dtype must be one of"),
    (_header(layout="zigzag"), "layout must be raw, dense or sparse"),
    (_header(nnz=10**12), "nnz must be an integer in 0..1073741824"),
    (_header(streams=[0]), "streams must be a list of 2 stream lengths"),
    (_header(gaps={"escape": 0, "coding": "fixed", "count": 0, "bytes": 0}), "gaps.escape must be an integer"),
    (_header(codebook={"dtype": "float32", "size": 2, "coding": "fixed", "bytes": 0}),
     "exactly one of codebook and values"),
])
def test_malformed_headers_are_clear_errors_naming_the_file(tmp_path, header, message):
    path = tmp_path / "bad.dlz"
    path.write_bytes(_forge(header))
    with pytest.raises(BadFileError, match=f"bad.dlz: malformed header: .*{message}"):
        read_packed(path)


def test_stream_lengths_are_checked_against_their_records_before_decoding():
    record = {"name": "b", "shape": [4], "dtype": "float32", "layout": "raw", "streams": [12]}
    with pytest.raises(BadFileError, match="its raw values stream has 12 bytes, its record says 16"):
        unpack_state(_forge(_header() | {"payload_bytes": 12, "tensors": [record]}, bytes(12)))
    # a code stream that cannot hold the values it claims (one bit each at least)
    record = {"name": "c", "shape": [1000], "dtype": "float32", "layout": "dense", "nnz": 0, "streams": [4, 2],
              "codebook": {"dtype": "float32", "size": 1, "coding": "fixed", "bytes": 2}}
    with pytest.raises(BadFileError, match="cannot hold 1000 symbols"):
        unpack_state(_forge(_header() | {"payload_bytes": 6, "tensors": [record]}, bytes(6)))


def test_model_arguments_from_a_file_cannot_build_without_end(compressed_lenet300, tmp_path):
    blob, _ = pack_state(compressed_lenet300.state_dict(), model="mlp", kwargs={"widths": [1] * 100_000})
    (tmp_path / "m.dlz").write_bytes(blob)
    with pytest.raises(BadFileError, match="far more layers than the file has tensors"):
        load_packed(tmp_path / "m.dlz")
    blob, _ = pack_state(compressed_lenet300.state_dict(), model="lenet300", kwargs={"hidden": [-3, 2]})
    (tmp_path / "n.dlz").write_bytes(blob)
    with pytest.raises(BadFileError, match="cannot build model 'lenet300' with the file's arguments"):
        load_packed(tmp_path / "n.dlz")
