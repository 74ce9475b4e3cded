"""Huffman codes are prefix-free and length-limited, and streams decode exactly."""

from __future__ import annotations

import numpy as np
import pytest

from dlslab.compress.huffman import (MAX_CODE_LENGTH, canonical_codes, huffman_decode, huffman_encode,
                                     huffman_lengths, huffman_size, pack_bits, unpack_bits)
from dlslab.errors import DataError

DISTRIBUTIONS = {
    "geometric": lambda rng, n: np.minimum(rng.geometric(0.15, n) - 1, 63),
    "uniform": lambda rng, n: rng.integers(0, 64, n),
    "one symbol": lambda rng, n: np.full(n, 5),
    "fibonacci counts": lambda rng, n: np.repeat(np.arange(24), [int(1.618**i) + 1 for i in range(24)]),
}


@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_codes_are_prefix_free_and_decode_exactly(name):
    rng = np.random.default_rng(0)
    symbols = DISTRIBUTIONS[name](rng, 20000)
    alphabet = int(symbols.max()) + 1
    lengths = huffman_lengths(np.bincount(symbols, minlength=alphabet))
    assert lengths.max() <= MAX_CODE_LENGTH  # Fibonacci counts would need 23 bits unlimited
    codes = canonical_codes(lengths)
    words = [format(int(c), f"0{int(l)}b") for c, l in zip(codes, lengths) if l > 0]
    assert len(set(words)) == len(words)
    assert not any(a != b and b.startswith(a) for a in words for b in words)
    assert (2.0 ** -lengths[lengths > 0]).sum() <= 1.0
    data = huffman_encode(symbols, alphabet)
    assert len(data) == huffman_size(np.bincount(symbols, minlength=alphabet))
    assert np.array_equal(huffman_decode(data, len(symbols)), symbols)


def test_huffman_beats_fixed_width_on_a_skewed_stream_and_approaches_the_entropy():
    rng = np.random.default_rng(1)
    symbols = np.minimum(rng.geometric(0.3, 50000) - 1, 31)
    counts = np.bincount(symbols, minlength=32)
    p = counts[counts > 0] / counts.sum()
    entropy_bytes = -(p * np.log2(p)).sum() * len(symbols) / 8
    size = len(huffman_encode(symbols, 32))
    assert size < len(pack_bits(symbols, 5)) * 0.6
    assert size < entropy_bytes * 1.03 + 64


def test_fixed_width_round_trip():
    values = np.random.default_rng(2).integers(0, 2**7, 999)
    assert np.array_equal(unpack_bits(pack_bits(values, 7), 7, len(values)), values)
    with pytest.raises(DataError):
        unpack_bits(pack_bits(values, 7)[:-10], 7, len(values))


def test_truncated_or_corrupt_streams_raise_data_error():
    symbols = np.random.default_rng(3).integers(0, 10, 5000)
    data = huffman_encode(symbols, 10)
    with pytest.raises(DataError, match="fewer than"):
        huffman_decode(data[: len(data) // 2], len(symbols))
    with pytest.raises(DataError):
        huffman_decode(data[:3], len(symbols))
    bad_table = bytearray(data)
    bad_table[2] = 0x11  # two 1-bit codes plus more codes: not a prefix code
    with pytest.raises(DataError, match="prefix code"):
        huffman_decode(bytes(bad_table), len(symbols))
