"""Canonical Huffman coding and fixed-width bit packing of integer symbol streams.

A Huffman stream is self-describing apart from its symbol count: the alphabet size (u16),
each symbol's code length as a 4-bit nibble (0 = unused; lengths are limited to 15 bits),
then the codes, MSB first, padded with zero bits to a whole byte. Canonical codes are
rebuilt from the lengths alone, so no code table is stored.

Encoding and decoding are vectorised with NumPy: decoding looks up the symbol that would
start at *every* bit position, then finds the positions that are actually symbol starts by
repeated squaring of that "next symbol" map, so there is no per-symbol Python loop.
"""

from __future__ import annotations

import heapq
import itertools
import math

import numpy as np

from dlslab.errors import DataError

MAX_CODE_LENGTH = 15  # lengths are stored as nibbles


def huffman_lengths(counts: np.ndarray, max_length: int = MAX_CODE_LENGTH) -> np.ndarray:
    """Code length per symbol (0 for symbols that never occur), at most `max_length` bits.

    Plain Huffman first; if a code is too long, small counts are raised to a floor that
    doubles until every length fits (a flatter distribution gives shorter longest codes)."""
    counts = np.asarray(counts, dtype=np.int64)
    used = np.flatnonzero(counts)
    lengths = np.zeros(len(counts), dtype=np.int64)
    if len(used) == 0:
        return lengths
    if len(used) == 1:
        lengths[used] = 1
        return lengths
    floor = 0
    while True:
        weights = np.maximum(counts[used], floor)
        tie = itertools.count()
        heap = [(int(w), next(tie), [int(s)]) for w, s in zip(weights, used)]
        heapq.heapify(heap)
        depth = dict.fromkeys(used.tolist(), 0)
        while len(heap) > 1:
            wa, _, a = heapq.heappop(heap)
            wb, _, b = heapq.heappop(heap)
            for s in a + b:
                depth[s] += 1
            heapq.heappush(heap, (wa + wb, next(tie), a + b))
        lengths[used] = [depth[s] for s in used.tolist()]
        if lengths.max() <= max_length:
            return lengths
        floor = max(1, floor * 2, int(counts[used].sum()) >> max_length)


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """The canonical code of each symbol, given the code lengths (shorter codes first,
    ties by symbol value)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(len(lengths), dtype=np.int64)
    code, prev = 0, 0
    for s in sorted(np.flatnonzero(lengths).tolist(), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[s]) - prev
        codes[s] = code
        code += 1
        prev = int(lengths[s])
    return codes


def _bits_of(codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate variable-length codes (MSB first) into one array of 0/1 bits."""
    total = int(lengths.sum())
    starts = np.cumsum(lengths) - lengths
    owner = np.repeat(np.arange(len(codes)), lengths)
    offset = np.arange(total) - starts[owner]
    return ((codes[owner] >> (lengths[owner] - 1 - offset)) & 1).astype(np.uint8)


def huffman_size(counts: np.ndarray) -> int:
    """Bytes `huffman_encode` writes for symbols with these counts (without encoding them)."""
    counts = np.asarray(counts, dtype=np.int64)
    return 2 + (len(counts) + 1) // 2 + (int((counts * huffman_lengths(counts)).sum()) + 7) // 8


def huffman_encode(symbols: np.ndarray, alphabet: int) -> bytes:
    """Encode integer symbols in [0, alphabet) as a self-describing canonical Huffman stream."""
    symbols = np.asarray(symbols, dtype=np.int64)
    if not 0 < alphabet < 2**16:
        raise ValueError(f"alphabet size {alphabet} must be in 1..65535")
    if symbols.size and (symbols.min() < 0 or symbols.max() >= alphabet):
        raise ValueError(f"symbols must lie in [0, {alphabet})")
    lengths = huffman_lengths(np.bincount(symbols, minlength=alphabet))
    codes = canonical_codes(lengths)
    nibbles = np.zeros(alphabet + alphabet % 2, dtype=np.uint8)
    nibbles[:alphabet] = lengths
    table = (nibbles[0::2] << 4) | nibbles[1::2]
    body = np.packbits(_bits_of(codes[symbols], lengths[symbols]))
    return alphabet.to_bytes(2, "little") + table.tobytes() + body.tobytes()


def huffman_decode(data: bytes, count: int) -> np.ndarray:
    """Decode `count` symbols from a stream written by `huffman_encode`. Raises DataError on
    a truncated or corrupt stream."""
    if len(data) < 2:
        raise DataError("Huffman stream truncated: no alphabet size")
    alphabet = int.from_bytes(data[:2], "little")
    table_bytes = (alphabet + 1) // 2
    if alphabet == 0 or len(data) < 2 + table_bytes:
        raise DataError("Huffman stream truncated or corrupt: bad code-length table")
    table = np.frombuffer(data, dtype=np.uint8, count=table_bytes, offset=2)
    lengths = np.empty(2 * table_bytes, dtype=np.int64)
    lengths[0::2], lengths[1::2] = table >> 4, table & 15
    lengths = lengths[:alphabet]
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if lengths.max() == 0 or (2.0 ** -lengths[lengths > 0]).sum() > 1.0:
        raise DataError("Huffman stream corrupt: its code lengths do not form a prefix code")
    codes = canonical_codes(lengths)
    width = int(lengths.max())
    # lookup table indexed by the next `width` bits: which symbol starts there, and its length
    sym_table = np.zeros(1 << width, dtype=np.int64)
    len_table = np.zeros(1 << width, dtype=np.int32)  # 0 = no code starts with these bits
    for s in np.flatnonzero(lengths).tolist():
        lo = int(codes[s]) << (width - int(lengths[s]))
        hi = (int(codes[s]) + 1) << (width - int(lengths[s]))
        sym_table[lo:hi], len_table[lo:hi] = s, lengths[s]
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8, offset=2 + table_bytes))
    nbits = len(bits)
    padded = np.concatenate([bits, np.zeros(width, dtype=np.uint8)]).astype(np.int32)
    peek = np.zeros(nbits, dtype=np.int32)  # the next `width` bits at every position
    for k in range(width):
        peek |= padded[k:k + nbits] << (width - 1 - k)
    step = len_table[peek]
    # where the next symbol starts, for a symbol starting at each position; bad codes and the
    # end lead to the absorbing position `nbits`
    jump = np.where(step > 0, np.arange(nbits, dtype=np.int32) + step, nbits)
    jump = np.concatenate([np.minimum(jump, nbits), [nbits]]).astype(np.int32)
    pos = _symbol_starts(jump, count)
    if pos[-1] >= nbits:
        raise DataError(f"Huffman stream truncated or corrupt: fewer than {count} symbols in it")
    if (step[pos] == 0).any() or pos[-1] + step[pos[-1]] > nbits:
        raise DataError("Huffman stream corrupt: an invalid code")
    return sym_table[peek[pos]]


def _symbol_starts(jump: np.ndarray, count: int) -> np.ndarray:
    """Bit positions of the first `count` symbols, following `jump` from position 0.

    `jump` is raised to the power K (a power of two near sqrt(count)) by repeated squaring,
    which finds the start of every K-th symbol in count/K cheap steps; the K symbols after
    each of those are then followed in lockstep, all chunks at once."""
    chunk = 1 << max(0, (int(math.isqrt(count)) - 1).bit_length())
    far = jump
    for _ in range(chunk.bit_length() - 1):
        far = far[far]
    n_chunks = -(-count // chunk)
    starts = np.empty(n_chunks, dtype=np.int32)
    p = 0
    for i in range(n_chunks):
        starts[i] = p
        p = far[p]
    pos = np.empty((n_chunks, chunk), dtype=np.int32)
    cur = starts
    for k in range(chunk):
        pos[:, k] = cur
        cur = jump[cur]
    return pos.reshape(-1)[:count]


def pack_bits(values: np.ndarray, width: int) -> bytes:
    """Unsigned integers in [0, 2**width) as fixed-width fields, MSB first."""
    values = np.asarray(values, dtype=np.int64)
    if values.size and (values.min() < 0 or values.max() >= 1 << width):
        raise ValueError(f"values do not fit in {width} bits")
    return np.packbits(_bits_of(values, np.full(len(values), width, dtype=np.int64))).tobytes()


def unpack_bits(data: bytes, width: int, count: int) -> np.ndarray:
    """Inverse of `pack_bits`. Raises DataError when `data` is too short."""
    if len(data) * 8 < width * count:
        raise DataError(f"bit-packed stream truncated: {len(data)} bytes hold fewer than {count} "
                        f"{width}-bit values")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: width * count].reshape(count, width)
    return bits.astype(np.int64) @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64))
