"""Read TensorFlow checkpoints (tensor bundles) with numpy alone: no TensorFlow, no protobuf.

A checkpoint ``<prefix>`` is two kinds of files:

* ``<prefix>.index``: a LevelDB-format table (an SSTable) mapping each tensor name to a
  ``BundleEntryProto`` (dtype, shape, shard, offset, size, CRC-32C). The table ends in a 48-byte
  footer (block handles, then the magic number); its index block points at the data blocks; keys
  in a block are prefix-compressed against the previous key, with restart points (uncompressed
  keys) that allow binary search. We read every record in order, so restart points only tell us
  where the records end. The empty key holds the ``BundleHeaderProto`` (shard count, endianness).
* ``<prefix>.data-SSSSS-of-NNNNN``: the raw little-endian tensor bytes, one file per shard.

Every block and every tensor carries a masked CRC-32C, which we verify: a truncated download or a
flipped bit fails here, naming the file, instead of yielding subtly wrong network weights.
musicnn's checkpoints have an empty prefix inside a folder (``MSD_musicnn/.index``): pass the
folder itself as the prefix.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from merflow.errors import MerflowError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5  # compression type (1 byte) + masked CRC-32C (4 bytes)

# TensorFlow's DataType enum values we can map onto numpy (types.proto).
DTYPES = {1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 9: np.dtype("<i8")}

_DAMAGED = "the file is damaged or not a TensorFlow checkpoint: download or re-save it"


class CheckpointError(MerflowError):
    """A checkpoint cannot be read: the message names the file and what to do."""


class _Malformed(Exception):
    """Raised while parsing; :func:`read_checkpoint` turns it into a :class:`CheckpointError`."""

    def __init__(self, reason: str, remedy: str = _DAMAGED):
        super().__init__(f"{reason}; {remedy}")


@dataclass(frozen=True)
class _Entry:
    """The fields of a ``BundleEntryProto`` that locate and check one tensor."""

    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    masked_crc: int | None
    sliced: bool


def read_checkpoint(prefix: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of the checkpoint ``prefix`` (a folder for an empty prefix), by name.

    Float tensors come back as float32/float64, integer ones as int32/int64; other dtypes raise
    :class:`CheckpointError` naming the tensor.
    """
    stem = os.path.join(prefix, "") if os.path.isdir(prefix) else os.fspath(prefix)
    index_path = Path(stem + ".index")
    try:
        num_shards, entries = _bundle_entries(_read_bytes(index_path))
    except _Malformed as exc:
        raise CheckpointError(f"{index_path}: {exc}") from None
    shards: dict[int, bytes] = {}
    tensors = {}
    for name, entry in entries.items():
        shard_path = Path(f"{stem}.data-{entry.shard_id:05d}-of-{num_shards:05d}")
        if entry.shard_id not in shards:
            shards[entry.shard_id] = _read_bytes(shard_path)
        tensors[name] = _tensor(name, entry, shards[entry.shard_id], shard_path)
    return tensors


def _bundle_entries(index: bytes) -> tuple[int, dict[str, _Entry]]:
    """The shard count (from the header under the empty key) and the entry of each tensor."""
    records = dict(_table_records(index))
    num_shards = _num_shards(records.pop(b"", b""))
    return num_shards, {key.decode(): _parse_entry(value) for key, value in records.items()}


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(
            f"{path}: file not found; a TensorFlow checkpoint <prefix> needs <prefix>.index and "
            "<prefix>.data-*: check the prefix (musicnn's is the model folder)"
        ) from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from None


# --- the LevelDB table ------------------------------------------------------------------------


def _table_records(table: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) record of a LevelDB-format table, in key order."""
    for _, handle in _block_records(_block(table, _index_handle(table))):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        yield from _block_records(_block(table, (offset, size)))


def _index_handle(table: bytes) -> tuple[int, int]:
    """(offset, size) of the index block, from the footer: metaindex handle, index handle, magic."""
    if len(table) < FOOTER_SIZE:
        raise _Malformed(f"{len(table)} bytes, shorter than the {FOOTER_SIZE}-byte table footer")
    footer = table[-FOOTER_SIZE:]
    if int.from_bytes(footer[-8:], "little") != TABLE_MAGIC:
        raise _Malformed("the table footer lacks the LevelDB magic number")
    _, pos = _varint(footer, _varint(footer, 0)[1])  # skip the metaindex handle
    offset, pos = _varint(footer, pos)
    size, _ = _varint(footer, pos)
    return offset, size


def _block(table: bytes, handle: tuple[int, int]) -> bytes:
    """The contents of the block at ``handle``, after checking its trailer's type and CRC."""
    offset, size = handle
    end = offset + size
    if end + BLOCK_TRAILER_SIZE > len(table) - FOOTER_SIZE:
        raise _Malformed(f"block at offset {offset} runs past the end of the table")
    compression = table[end]
    if compression != 0:
        raise _Malformed(
            f"block at offset {offset} is compressed (type {compression}, 1 = snappy)",
            "only uncompressed tables are supported, TensorFlow's default: re-save the checkpoint",
        )
    stored_crc = int.from_bytes(table[end + 1 : end + BLOCK_TRAILER_SIZE], "little")
    if unmask_crc(stored_crc) != crc32c(table[offset : end + 1]):
        raise _Malformed(f"block at offset {offset} fails its CRC-32C check")
    return table[offset:end]


def _block_records(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) records of a block, undoing prefix compression.

    Each record is ``shared, unshared, value_length`` (varints), the unshared key suffix and the
    value; the block ends with the restart offsets (uint32 each) and their count (uint32).
    """
    if len(block) < 4:
        raise _Malformed("a block is too short to hold its restart count")
    num_restarts = int.from_bytes(block[-4:], "little")
    records_end = len(block) - 4 * (num_restarts + 1)
    if records_end < 0:
        raise _Malformed(f"a block claims {num_restarts} restart points, more than it can hold")
    records = block[:records_end]
    key, pos = b"", 0
    while pos < len(records):
        shared, pos = _varint(records, pos)
        unshared, pos = _varint(records, pos)
        value_length, pos = _varint(records, pos)
        if shared > len(key):
            raise _Malformed(f"a key shares {shared} bytes with a previous key of {len(key)}")
        suffix, pos = _take(records, pos, unshared)
        value, pos = _take(records, pos, value_length)
        key = key[:shared] + suffix
        yield key, value


# --- the protobuf messages ----------------------------------------------------------------------


def _num_shards(header: bytes) -> int:
    """``num_shards`` of a ``BundleHeaderProto`` (1: num_shards, 2: endianness, 3: version)."""
    fields = dict(_proto_fields(header))
    if fields.get(2, 0) != 0:
        raise _Malformed("the checkpoint is big-endian", "re-save it on a little-endian machine")
    return fields.get(1, 1)


def _parse_entry(message: bytes) -> _Entry:
    """A ``BundleEntryProto``: 1 dtype, 2 shape, 3 shard_id, 4 offset, 5 size, 6 crc32c (fixed32),
    7 slices (set for partitioned variables)."""
    fields = dict(_proto_fields(message))
    # TensorShapeProto: 2 dim (repeated Dim: 1 size, 2 name).
    shape = tuple(
        dict(_proto_fields(dim)).get(1, 0)
        for number, dim in _proto_fields(fields.get(2, b""))
        if number == 2
    )
    return _Entry(
        dtype=fields.get(1, 0),
        shape=shape,
        shard_id=fields.get(3, 0),
        offset=fields.get(4, 0),
        size=fields.get(5, 0),
        masked_crc=fields.get(6),
        sliced=7 in fields,
    )


def _proto_fields(message: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message, in wire order.

    Varints and fixed-width numbers come back as non-negative ints, length-delimited fields as
    bytes (nested messages are parsed by calling this again).
    """
    pos = 0
    while pos < len(message):
        key, pos = _varint(message, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _varint(message, pos)
        elif wire_type == 2:
            length, pos = _varint(message, pos)
            value, pos = _take(message, pos, length)
        elif wire_type in (1, 5):
            raw, pos = _take(message, pos, 8 if wire_type == 1 else 4)
            value = int.from_bytes(raw, "little")
        else:
            raise _Malformed(f"protobuf field {number} has unsupported wire type {wire_type}")
        yield number, value


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The base-128 varint at ``pos`` and the position after it."""
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed("a varint runs past the end of its block")
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return result, pos


def _take(data: bytes, pos: int, length: int) -> tuple[bytes, int]:
    """``length`` bytes at ``pos`` and the position after them; fails instead of truncating."""
    if pos + length > len(data):
        raise _Malformed("a record runs past the end of its block")
    return data[pos : pos + length], pos + length


# --- tensors ----------------------------------------------------------------------------------


def _tensor(name: str, entry: _Entry, shard: bytes, shard_path: Path) -> np.ndarray:
    """The array of one entry, after checking its dtype, size and CRC-32C."""
    if entry.sliced:
        raise CheckpointError(
            f"{shard_path}: tensor {name!r} is saved in slices (a partitioned variable), "
            "which this reader does not support; re-save it unpartitioned"
        )
    dtype = DTYPES.get(entry.dtype)
    if dtype is None:
        raise CheckpointError(
            f"{shard_path}: tensor {name!r} has TensorFlow dtype {entry.dtype}; this reader "
            f"supports {sorted(DTYPES)} (float32, float64, int32, int64): cast it before saving"
        )
    expected_size = int(np.prod(entry.shape, dtype=np.int64)) * dtype.itemsize
    raw = shard[entry.offset : entry.offset + entry.size]
    if len(raw) != entry.size or entry.size != expected_size:
        raise CheckpointError(
            f"{shard_path}: tensor {name!r} should hold {expected_size} bytes at offset "
            f"{entry.offset} but {len(raw)} are there; {_DAMAGED}"
        )
    if entry.masked_crc is not None and unmask_crc(entry.masked_crc) != crc32c(raw):
        raise CheckpointError(f"{shard_path}: tensor {name!r} fails its CRC-32C check; {_DAMAGED}")
    return np.frombuffer(raw, dtype=dtype).reshape(entry.shape).copy()


# --- CRC-32C ----------------------------------------------------------------------------------

_CASTAGNOLI = 0x82F63B78  # the CRC-32C polynomial, bit-reversed
_MASK_DELTA = 0xA282EAD8
_LANES = 1024  # byte streams advanced together by one numpy step
_MIN_LANE_LENGTH = 16  # below 16 kB a plain loop is as fast


def _crc_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ _CASTAGNOLI, table >> 1).astype(np.uint32)
    return table


_TABLE = _crc_table()
_TABLE_INTS = _TABLE.tolist()


def mask_crc(crc: int) -> int:
    """LevelDB's and TensorFlow's masking: stored CRCs are rotated and offset, so that the CRC of
    data that itself contains CRCs stays well distributed."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """The inverse of :func:`mask_crc`."""
    rotated = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``, about 100 MB/s with numpy.

    A table-driven CRC is a byte-at-a-time loop, too slow in Python for megabytes. The CRC
    register update is linear over GF(2), so we cut the data into ``_LANES`` equal chunks, run all
    chunks at once from a zero register (one vectorised step per byte position), and chain the
    chunk results: CRC(s, A + B) = CRC(0, B) xor ZEROS_len(B)(CRC(s, A)), where ZEROS_n advances
    a register through n zero bytes. The remaining tail goes through the plain loop.
    """
    lane_length = len(data) // _LANES
    if lane_length < _MIN_LANE_LENGTH:
        return _crc_loop(0xFFFFFFFF, data) ^ 0xFFFFFFFF
    body = np.frombuffer(data, dtype=np.uint8, count=_LANES * lane_length)
    chunk_crcs, advance = _lane_crcs(body.reshape(_LANES, lane_length))
    register = 0xFFFFFFFF
    for chunk_crc in chunk_crcs.tolist():
        register = advance(register) ^ chunk_crc
    return _crc_loop(register, data[_LANES * lane_length :]) ^ 0xFFFFFFFF


def _crc_loop(register: int, data: bytes) -> int:
    for byte in data:
        register = _TABLE_INTS[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


def _lane_crcs(chunks: np.ndarray):
    """CRC registers of each row of ``chunks`` (from zero), and the operator ZEROS_<row length>.

    32 extra all-zero rows start from the 32 one-bit registers: their results are the columns
    of ZEROS_n as a GF(2) matrix, turned into four byte-indexed tables for a fast apply.
    """
    lanes, length = chunks.shape
    bits = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))
    registers = np.concatenate([np.zeros(lanes, np.uint32), bits])
    columns = np.zeros((length, lanes + 32), np.uint8)  # one row per step, contiguous
    columns[:, :lanes] = chunks.T
    for column in columns:
        registers = _TABLE[(registers ^ column) & 0xFF] ^ (registers >> 8)
    zeros_matrix = registers[lanes:]
    byte_bits = (np.arange(256)[:, None] >> np.arange(8)) & 1  # (256, 8)
    tables = [
        np.bitwise_xor.reduce(np.where(byte_bits, zeros_matrix[8 * k : 8 * k + 8], 0), axis=1)
        .astype(np.uint32)
        .tolist()
        for k in range(4)
    ]

    def advance(register: int) -> int:
        return (
            tables[0][register & 0xFF]
            ^ tables[1][(register >> 8) & 0xFF]
            ^ tables[2][(register >> 16) & 0xFF]
            ^ tables[3][register >> 24]
        )

    return registers[:lanes], advance
