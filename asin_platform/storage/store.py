"""The artifact store: files addressed by URL, on local disk or in object storage.

A store is a root URL (``file:///abs/artifacts``, ``s3://bucket/prefix``, ``gs://bucket/prefix``) and
everything under it is named by a relative key (``models/<version>/model.txt``). fsspec gives one
interface over the three; s3fs / gcsfs read credentials the way the providers' own tools do (the
environment: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` for an
S3-compatible server, a service account on GKE), so no secret ever passes through settings,
metadata or logs.

A plain path (the embedded default ``artifacts`` / ``exports``) is resolved against the working
directory when the store is opened, as the folders always were, and becomes a ``file://`` root.

Writes are whole objects: an object-store PUT is atomic, and a local file is written beside its
final name and renamed, so a reader (another run, the dashboard) never sees half a file.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from fsspec.core import url_to_fs

from asin_platform.settings import Settings

LOCAL = "file://"


def is_url(location: str | Path) -> bool:
    return "://" in str(location)


def as_url(location: str | Path) -> str:
    """A URL for ``location``: URLs as they are (no trailing slash), paths as absolute file:// URLs."""
    text = str(location)
    if is_url(text):
        return text.rstrip("/")
    return Path(text).resolve().as_uri()


def shown(url: str) -> str:
    """What to show people and metadata: a local file's path, any other object's URL."""
    if url.startswith(LOCAL):
        return url_to_fs(url)[1]
    return url


def read_bytes(url: str) -> bytes:
    fs, path = url_to_fs(as_url(url))
    return fs.cat_file(path)


def exists(url: str) -> bool:
    fs, path = url_to_fs(as_url(url))
    return bool(fs.exists(path))


def write_bytes(url: str, data: bytes) -> str:
    """Write one whole object at ``url``; returns the URL."""
    url = as_url(url)
    fs, path = url_to_fs(url)
    if url.startswith(LOCAL):
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        partial.write_bytes(data)
        partial.replace(target)
    else:
        fs.pipe_file(path, data)
    return url


def frame_bytes(frame: pl.DataFrame, suffix: str) -> bytes:
    """``frame`` as CSV or Parquet bytes (by ``suffix``)."""
    buffer = io.BytesIO()
    if suffix.lower() == ".csv":
        frame.write_csv(buffer)
    elif suffix.lower() == ".parquet":
        frame.write_parquet(buffer)
    else:
        raise ValueError(f"unsupported table format {suffix!r}: use .csv or .parquet")
    return buffer.getvalue()


def read_frame(url: str) -> pl.DataFrame:
    """A CSV or Parquet object as a frame."""
    data = io.BytesIO(read_bytes(url))
    if url.lower().endswith(".csv"):
        return pl.read_csv(data, try_parse_dates=True)
    return pl.read_parquet(data)


@dataclass(frozen=True)
class ArtifactStore:
    """Objects under one root URL, named by relative keys."""

    root: str

    @classmethod
    def at(cls, location: str | Path) -> ArtifactStore:
        return cls(as_url(location))

    @property
    def is_local(self) -> bool:
        return self.root.startswith(LOCAL)

    def url(self, key: str) -> str:
        return f"{self.root}/{key.lstrip('/')}"

    def write_bytes(self, key: str, data: bytes) -> str:
        return write_bytes(self.url(key), data)

    def write_text(self, key: str, text: str) -> str:
        return self.write_bytes(key, text.encode())

    def write_frame(self, key: str, frame: pl.DataFrame) -> str:
        return self.write_bytes(key, frame_bytes(frame, Path(key).suffix))

    def read_bytes(self, key: str) -> bytes:
        return read_bytes(self.url(key))

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode()

    def exists(self, key: str) -> bool:
        return exists(self.url(key))

    def glob(self, pattern: str) -> list[str]:
        """URLs of the objects matching ``pattern`` (relative to the root), sorted."""
        fs, path = url_to_fs(self.url(pattern))
        return sorted(fs.unstrip_protocol(found) for found in fs.glob(path))

    def __str__(self) -> str:
        return shown(self.root)


def artifacts_store(settings: Settings) -> ArtifactStore:
    """Models, samples, tuning: ``storage.artifacts_url``, else the local ``artifacts_dir``."""
    return ArtifactStore.at(settings.storage.artifacts_url or settings.artifacts_dir)


def exports_store(settings: Settings) -> ArtifactStore:
    """Export files and plots: ``storage.exports_url``, else the local ``exports_dir``."""
    return ArtifactStore.at(settings.storage.exports_url or settings.exports_dir)
