"""PostgreSQL's binary COPY format, encoded from a polars DataFrame without a Python loop over rows.

Why: at 1M rows per partition the server spent most of a CSV load parsing text (float and date
input functions); binary COPY hands it the values in their wire form (``*_recv``), which costs the
backend about half the CPU (``docs/benchmarks.md``, "PostgreSQL writes: binary COPY").

The format (PostgreSQL docs, "COPY", "Binary Format"): the header ``PGCOPY\\n\\377\\r\\n\\0``, an
int32 flags word and an int32 header-extension length (both 0); then per row an int16 field count
and per field an int32 byte length (-1 for NULL, no bytes follow) and the value's bytes, big-endian;
then the int16 trailer -1.

How it is vectorised: the columns of a chunk are converted once to numpy (values, validity, Arrow's
string offsets and bytes); rows are then laid out ~``MATRIX_BUDGET`` bytes at a time in a
``(rows, width)`` uint8 matrix in which every field has a fixed byte range (fixed-width types take
their width, text the piece's longest value). A structured dtype over that matrix writes each
field's length words and values with one strided copy (which also swaps the bytes); strings are
placed by a boolean-mask assignment. The bytes a row does not use (the value of a NULL, the padding
after a shorter string) are then dropped with one boolean mask, which leaves the rows back to back
in the order COPY wants.

Supported column types of the *target table* (pg_catalog names, read from the server's catalogue):
``int2 int4 int8 float4 float8 bool date timestamp timestamptz text varchar``. A load into a table
with any other type among the loaded columns (``numeric``, ``jsonb``, ``bytea``, arrays, domains,
``bpchar``, ...), or whose frame dtype does not match its column's kind (a string into an integer
column, say), is not encoded here: :func:`binary_types` returns None and the caller falls back to
CSV, where the server parses text as before.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
#: Signature, flags (no OIDs) and header-extension length.
HEADER = SIGNATURE + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)

# PostgreSQL counts dates and timestamps from 2000-01-01, polars from 1970-01-01.
_PG_EPOCH_DAYS = 10_957
_PG_EPOCH_US = _PG_EPOCH_DAYS * 86_400 * 1_000_000
_INT32 = np.iinfo(np.int32)

# Target type -> (polars dtype the column is cast to, big-endian numpy dtype of its value; None = text).
_TARGETS: dict[str, tuple[pl.DataType, str | None]] = {
    "int2": (pl.Int16(), ">i2"),
    "int4": (pl.Int32(), ">i4"),
    "int8": (pl.Int64(), ">i8"),
    "float4": (pl.Float32(), ">f4"),
    "float8": (pl.Float64(), ">f8"),
    "bool": (pl.Boolean(), "u1"),
    "date": (pl.Date(), ">i4"),
    "timestamp": (pl.Datetime("us"), ">i8"),
    "timestamptz": (pl.Datetime("us", "UTC"), ">i8"),
    "text": (pl.String(), None),
    "varchar": (pl.String(), None),
}
SUPPORTED_TYPES = frozenset(_TARGETS)

_INTS = {pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64}
_FLOATS = {pl.Float32, pl.Float64}
# Frame dtypes each target kind takes without a change of meaning; anything else goes through CSV and
# the server's text input (which is what decides, say, whether "1.5" fits an integer column).
_ACCEPTS: dict[str, set[type[pl.DataType]]] = {
    "int2": _INTS,
    "int4": _INTS,
    "int8": _INTS,
    "float4": _INTS | _FLOATS,
    "float8": _INTS | _FLOATS,
    "bool": {pl.Boolean},
    "date": {pl.Date},
    "timestamp": {pl.Datetime},
    "timestamptz": {pl.Datetime},
    "text": {pl.String, pl.Categorical, pl.Enum},
    "varchar": {pl.String, pl.Categorical, pl.Enum},
}

#: Bytes of the padded row matrix built at a time (rows per piece = this / the widest row): small
#: enough for the matrix and its mask to stay in cache, large enough that per-field overheads vanish.
MATRIX_BUDGET = 1 << 20

#: The target table's column types: name -> pg_catalog type name (None for a type outside pg_catalog,
#: a domain or an extension's type). ``to_regclass`` resolves through search_path, temporary tables first.
CATALOGUE_SQL = """
SELECT a.attname, CASE WHEN t.typnamespace = 'pg_catalog'::regnamespace THEN t.typname END
FROM pg_attribute AS a JOIN pg_type AS t ON t.oid = a.atttypid
WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
"""


def table_types(conn: Any, table_sql: str) -> dict[str, str | None]:
    """Column types of the table ``table_sql`` (a quoted, possibly qualified name) on ``conn``."""
    rows = conn.execute(CATALOGUE_SQL, [table_sql]).fetchall()
    return {name: typname for name, typname in rows}


def binary_types(schema: Mapping[str, pl.DataType], types: Mapping[str, str | None]) -> dict[str, str] | None:
    """The target type of every column of ``schema``, or None when one of them cannot go binary.

    None means: a column missing from the table (the server will say so), a target type outside
    ``SUPPORTED_TYPES``, or a frame dtype that is not of the target's kind.
    """
    chosen: dict[str, str] = {}
    for column, dtype in schema.items():
        target = types.get(column)
        if target not in _TARGETS:
            return None
        if dtype != pl.Null and dtype.base_type() not in _ACCEPTS[target]:
            return None
        chosen[column] = target
    return chosen


def conform(frame: pl.DataFrame, types: Mapping[str, str]) -> pl.DataFrame:
    """``frame`` with each column cast to its target's polars dtype (strict: an integer that does not
    fit its column raises ``polars.exceptions.InvalidOperationError``)."""
    exprs = []
    for column, target in types.items():
        dtype = _TARGETS[target][0]
        source = frame.schema[column]
        expr = pl.col(column)
        if target == "timestamp" and getattr(source, "time_zone", None) is not None:
            # An offset is ignored by timestamp's text input too: the wall-clock time is stored.
            expr = expr.dt.replace_time_zone(None)
        elif target == "timestamptz" and isinstance(source, pl.Datetime) and source.time_zone is None:
            expr = expr.dt.replace_time_zone("UTC")  # a naive value is read in the session's UTC
        exprs.append(expr.cast(dtype, strict=True).alias(column))
    return frame.select(exprs)


def encode(
    frame: pl.DataFrame, types: Mapping[str, str], *, header: bool = True, trailer: bool = True
) -> bytes:
    """The rows of ``frame`` (already ``conform``-ed to ``types``) in binary COPY format.

    ``header`` / ``trailer`` add the file's header and end marker, so a load can be sent as several
    chunks: the first with the header, the last with the trailer (or each alone, as ``HEADER`` and
    ``TRAILER``).
    """
    parts: list[bytes | np.ndarray] = [HEADER] if header else []
    parts.extend(encode_rows(frame, types))
    if trailer:
        parts.append(TRAILER)
    return b"".join(parts)


def encode_rows(frame: pl.DataFrame, types: Mapping[str, str]) -> Iterator[np.ndarray]:
    """The rows of ``frame`` (``conform``-ed) as consecutive byte buffers, without header or trailer.

    The columns are converted once; the rows are laid out a piece at a time, each piece's matrix
    within ``MATRIX_BUDGET`` bytes, so the matrix and its mask stay in the CPU cache.
    """
    if frame.height == 0:
        return
    columns = [_column(frame.get_column(c), types[c]) for c in frame.columns]
    row_width = 2 + sum(4 + c.width for c in columns)
    step = max(1, MATRIX_BUDGET // row_width)
    for start in range(0, frame.height, step):
        stop = min(start + step, frame.height)
        yield _matrix(stop - start, [c.slice(start, stop) for c in columns])


class _Column:
    """One column of a chunk: its field-length words and its value bytes."""

    def __init__(self, lengths: np.ndarray, width: int, valid: np.ndarray | None) -> None:
        self.lengths = lengths  # per row, -1 for NULL
        self.width = width  # bytes reserved per row for the value
        self.valid = valid  # None when no row is NULL

    def slice(self, start: int, stop: int) -> _Column:
        """Rows ``start:stop`` (views, no copy of the values)."""
        raise NotImplementedError


class _Fixed(_Column):
    def __init__(self, values: np.ndarray, wire: str, valid: np.ndarray | None) -> None:
        width = np.dtype(wire).itemsize
        lengths = np.where(valid, width, -1) if valid is not None else np.full(len(values), width)
        super().__init__(lengths, width, valid)
        self.values = values  # native byte order: the copy into the row layout swaps the bytes
        self.wire = wire

    def slice(self, start: int, stop: int) -> _Fixed:
        valid = self.valid[start:stop] if self.valid is not None else None
        return _Fixed(self.values[start:stop], self.wire, valid)


class _Text(_Column):
    def __init__(self, data: np.ndarray, offsets: np.ndarray, valid: np.ndarray | None) -> None:
        # Arrow lets a NULL slot own bytes (polars' when/then/otherwise leaves them there): they are
        # copied like any others, so the data stays one contiguous run, but no row keeps them.
        stored = np.diff(offsets)
        super().__init__(np.where(valid, stored, -1) if valid is not None else stored, 0, valid)
        self.width = int(stored.max()) if len(stored) else 0
        self.data = data
        self.offsets = offsets
        self.stored = stored

    def slice(self, start: int, stop: int) -> _Text:
        offsets = self.offsets[start : stop + 1]
        valid = self.valid[start:stop] if self.valid is not None else None
        return _Text(self.data[offsets[0] : offsets[-1]], offsets - offsets[0], valid)


def _column(series: pl.Series, target: str) -> _Column:
    wire = _TARGETS[target][1]
    valid = series.is_not_null().to_numpy() if series.null_count() else None
    if wire is None:
        arrow = series.to_arrow()
        if not pa.types.is_large_string(arrow.type):  # what polars 2 exports; be sure of the offsets
            arrow = arrow.cast(pa.large_string())
        _, offset_buffer, data_buffer = arrow.buffers()
        offsets = np.frombuffer(offset_buffer, np.int64)[arrow.offset : arrow.offset + len(arrow) + 1]
        if data_buffer is None:
            data = np.empty(0, np.uint8)
        else:
            data = np.frombuffer(data_buffer, np.uint8)[offsets[0] : offsets[-1]]
        return _Text(data, offsets - offsets[0], valid)
    if target == "bool":
        values = series.fill_null(False).to_numpy()
    elif target == "date":
        values = series.to_physical().fill_null(_PG_EPOCH_DAYS).to_numpy().astype(np.int64) - _PG_EPOCH_DAYS
        if values.min() < _INT32.min or values.max() > _INT32.max:
            raise ValueError("a date lies outside PostgreSQL's range")
    elif target in ("timestamp", "timestamptz"):
        values = series.to_physical().fill_null(_PG_EPOCH_US).to_numpy() - _PG_EPOCH_US
    else:
        values = series.fill_null(0).to_numpy()
    return _Fixed(values, wire, valid)


# A NULL fixed-width value's bytes are masked out a whole field at a time: an unsigned integer of
# the field's width with every byte 0 or 1 is written into the bool mask.
_MASK_WORDS = {1: ("u1", 0x01), 2: ("u2", 0x0101), 4: ("u4", 0x01010101), 8: ("u8", 0x0101010101010101)}


def _matrix(rows: int, columns: list[_Column]) -> np.ndarray:
    """The rows as a (rows x width) byte matrix, returned flat with the unused bytes dropped."""
    width = 2 + sum(4 + c.width for c in columns)
    names, formats, offsets = ["count"], [">i2"], [0]
    mask_names, mask_formats, mask_offsets, mask_values = [], [], [], []
    texts: list[tuple[int, _Text]] = []
    at = 2
    for i, column in enumerate(columns):
        names.append(f"n{i}")
        formats.append(">i4")
        offsets.append(at)
        at += 4
        if isinstance(column, _Fixed):
            names.append(f"v{i}")
            formats.append(column.wire)
            offsets.append(at)
            if column.valid is not None:
                word, ones = _MASK_WORDS[column.width]
                mask_names.append(f"v{i}")
                mask_formats.append(word)
                mask_offsets.append(at)
                mask_values.append(column.valid.astype(word) * np.array(ones, word))
        elif isinstance(column, _Text):
            texts.append((at, column))
        at += column.width
    # Each field is one strided copy (with the byte swap) into its place in every row.
    layout = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": width})
    matrix = np.empty((rows, width), np.uint8)
    record = matrix.view(layout).reshape(rows)
    record["count"] = len(columns)
    for i, column in enumerate(columns):
        record[f"n{i}"] = column.lengths
        if isinstance(column, _Fixed):
            record[f"v{i}"] = column.values
    keep: np.ndarray | None = None
    if mask_names or any(t.width for _, t in texts):
        keep = np.ones((rows, width), bool)
    if mask_names:
        mask_layout = np.dtype(
            {"names": mask_names, "formats": mask_formats, "offsets": mask_offsets, "itemsize": width}
        )
        mask_record = keep.view(np.uint8).view(mask_layout).reshape(rows)
        for name, value in zip(mask_names, mask_values, strict=True):
            mask_record[name] = value
    for at, text in texts:
        if not text.width:
            continue
        # Row i's bytes fill its first stored_i positions of the field: a boolean-mask assignment
        # takes the data in row order, which is the order Arrow holds it in.
        used = np.arange(text.width) < text.stored[:, None]
        matrix[:, at : at + text.width][used] = text.data
        if text.valid is not None:
            used &= text.valid[:, None]
        keep[:, at : at + text.width] = used
    return matrix.reshape(-1) if keep is None else matrix[keep]
