"""PostgreSQL's binary COPY format, encoded from a polars DataFrame without a Python loop over rows.

Why: at 1M rows per partition the server spent most of a CSV load parsing text (float and date
input functions); binary COPY hands it the values in their wire form (``*_recv``), which costs the
backend about half the CPU (``docs/benchmarks.md``, "PostgreSQL writes: binary COPY").

The format (PostgreSQL docs, "COPY", "Binary Format"): the header ``PGCOPY\\n\\377\\r\\n\\0``, an
int32 flags word and an int32 header-extension length (both 0); then per row an int16 field count
and per field an int32 byte length (-1 for NULL, no bytes follow) and the value's bytes, big-endian;
then the int16 trailer -1.

How it is vectorised: a chunk of rows becomes one ``(rows, width)`` uint8 matrix in which every
field has a fixed column range (fixed-width types take their width, text takes the chunk's longest
value), filled column by column with strided numpy copies of big-endian arrays; the bytes a row does
not use (the value of a NULL, the padding after a shorter string) are then dropped with one boolean
mask, which leaves the rows back to back in the order COPY wants.

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

#: Bytes of the padded matrix one encode step may build; a chunk over it is encoded in halves (a single
#: long string would otherwise pad every row of its chunk to its length).
MATRIX_BUDGET = 64 << 20

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
    parts = [HEADER] if header else []
    parts.extend(_rows(frame, types))
    if trailer:
        parts.append(TRAILER)
    return b"".join(parts)


def _rows(frame: pl.DataFrame, types: Mapping[str, str]) -> Iterator[bytes]:
    if frame.height == 0:
        return
    columns = [_column(frame.get_column(c), types[c]) for c in frame.columns]
    width = 2 + sum(4 + c.width for c in columns)
    if frame.height > 1 and frame.height * width > MATRIX_BUDGET:
        half = frame.height // 2
        yield from _rows(frame.slice(0, half), types)
        yield from _rows(frame.slice(half), types)
        return
    yield _matrix(frame.height, width, columns)


class _Column:
    """One column of a chunk: its field-length words, its value bytes and which of them are used."""

    def __init__(self, lengths: np.ndarray, width: int) -> None:
        self.lengths = lengths  # per row, -1 for NULL
        self.width = width  # bytes reserved per row for the value

    def fill(self, matrix: np.ndarray, at: int) -> np.ndarray | None:
        """Write the values into ``matrix[:, at:at + width]``; return the used-bytes mask of that
        range (None when every byte is used)."""
        raise NotImplementedError


class _Fixed(_Column):
    def __init__(self, values: np.ndarray, valid: np.ndarray | None) -> None:
        width = values.dtype.itemsize
        lengths = np.where(valid, width, -1) if valid is not None else np.full(len(values), width)
        super().__init__(lengths, width)
        self.values = values
        self.valid = valid

    def fill(self, matrix: np.ndarray, at: int) -> np.ndarray | None:
        matrix[:, at : at + self.width] = self.values.view(np.uint8).reshape(len(self.values), self.width)
        if self.valid is None:
            return None
        return np.broadcast_to(self.valid[:, None], (len(self.values), self.width))


class _Text(_Column):
    def __init__(self, data: np.ndarray, offsets: np.ndarray, valid: np.ndarray | None) -> None:
        # Arrow lets a NULL slot own bytes (polars' when/then/otherwise leaves them): they are still
        # copied, so the scatter stays one contiguous run, but no row keeps them.
        stored = np.diff(offsets)
        sizes = np.where(valid, stored, 0) if valid is not None else stored
        lengths = np.where(valid, stored, -1) if valid is not None else stored
        super().__init__(lengths, int(stored.max()) if len(stored) else 0)
        self.data = data
        self.starts = offsets[:-1]
        self.stored = stored
        self.sizes = sizes

    def fill(self, matrix: np.ndarray, at: int) -> np.ndarray | None:
        if self.width == 0:
            return None
        rows, stride = matrix.shape
        # Byte j of row i's string goes to matrix[i, at + j]: one scatter over the column's bytes.
        row_base = np.arange(rows, dtype=np.int64) * stride + at - self.starts
        index = np.repeat(row_base, self.stored) + np.arange(len(self.data), dtype=np.int64)
        matrix.reshape(-1)[index] = self.data
        return np.arange(self.width) < self.sizes[:, None]


def _column(series: pl.Series, target: str) -> _Column:
    numpy_dtype = _TARGETS[target][1]
    valid = series.is_not_null().to_numpy() if series.null_count() else None
    if numpy_dtype is None:
        arrow = series.to_arrow()
        if not pa.types.is_large_string(arrow.type):  # what polars 2 exports; be sure of the offsets' width
            arrow = arrow.cast(pa.large_string())
        _, offset_buffer, data_buffer = arrow.buffers()
        offsets = np.frombuffer(offset_buffer, np.int64)[arrow.offset : arrow.offset + len(arrow) + 1]
        if data_buffer is None:
            data = np.empty(0, np.uint8)
        else:
            data = np.frombuffer(data_buffer, np.uint8)[offsets[0] : offsets[-1]]
        return _Text(data, offsets - offsets[0], valid)
    if target == "bool":
        values = series.fill_null(False).to_numpy().view(np.uint8)
    elif target == "date":
        days = series.to_physical().fill_null(_PG_EPOCH_DAYS).to_numpy().astype(np.int64) - _PG_EPOCH_DAYS
        if days.min() < _INT32.min or days.max() > _INT32.max:
            raise ValueError("a date lies outside PostgreSQL's range")
        values = days.astype(">i4")
    elif target in ("timestamp", "timestamptz"):
        values = (series.to_physical().fill_null(_PG_EPOCH_US).to_numpy() - _PG_EPOCH_US).astype(">i8")
    else:
        values = series.fill_null(0).to_numpy().astype(numpy_dtype)
    return _Fixed(values, valid)


def _matrix(rows: int, width: int, columns: list[_Column]) -> bytes:
    matrix = np.empty((rows, width), np.uint8)
    keep: np.ndarray | None = None
    matrix[:, 0:2] = np.frombuffer(struct.pack(">h", len(columns)), np.uint8)
    at = 2
    for column in columns:
        matrix[:, at : at + 4] = column.lengths.astype(">i4").view(np.uint8).reshape(rows, 4)
        at += 4
        used = column.fill(matrix, at)
        if used is not None:
            if keep is None:
                keep = np.ones((rows, width), bool)
            keep[:, at : at + column.width] = used
        at += column.width
    return (matrix if keep is None else matrix[keep]).tobytes()
