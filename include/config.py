"""Where things live. One place for every path the project uses.

The lakehouse root is ``--lake`` when given, else ``$DATAMILL_LAKE``, else the
project's embedded ``lakehouse/`` folder.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = PROJECT_ROOT / ".cache"
IVY_DIR = CACHE_DIR / "ivy"
PIPELINES_DIR = PROJECT_ROOT / "include" / "pipelines"
SAMPLE_DATA_DIR = PROJECT_ROOT / "include" / "sample_data"
DEFAULT_LAKE = PROJECT_ROOT / "lakehouse"


def is_uri(location: str | os.PathLike) -> bool:
    """True for ``scheme://...`` locations (object stores, ``file://``)."""
    return "://" in str(location)


class LakeURI:
    """A lakehouse location given as a URI (``s3://bucket/lake``, ``gs://``,
    ``abfss://container@account.dfs.core.windows.net/x``, ``file:///...``),
    joined with ``/`` and printed back exactly as given, which is what Spark and
    delta-rs take. ``Path`` would turn ``s3://b/x`` into ``<cwd>/s3:/b/x``;
    universal_pathlib's UPath drops the account from an ``abfss://`` authority,
    so this small class is ours. Only a ``file://`` URI is also a local path
    (``os.fspath``)."""

    __slots__ = ("uri",)

    def __init__(self, uri: str):
        scheme, rest = str(uri).split("://", 1)
        self.uri = f"{scheme}://{rest.rstrip('/')}" if rest.strip("/") else f"{scheme}://{rest}"

    @property
    def scheme(self) -> str:
        return self.uri.split("://", 1)[0]

    @property
    def name(self) -> str:
        return self.uri.rsplit("/", 1)[-1]

    def __truediv__(self, part: str | os.PathLike) -> "LakeURI":
        part = str(part).strip("/")
        return LakeURI(f"{self.uri}/{part}") if part else self

    def __fspath__(self) -> str:
        if self.scheme != "file":
            raise TypeError(f"{self.uri} is not a local path")
        from urllib.parse import urlparse

        return urlparse(self.uri).path

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"LakeURI({self.uri!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, LakeURI) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)


def as_location(location: str | os.PathLike):
    """A lakehouse location as a path object that keeps what it is: a local path
    becomes a resolved ``Path``, a URI a :class:`LakeURI`."""
    if isinstance(location, LakeURI):
        return location
    if not isinstance(location, (str, os.PathLike)):
        raise TypeError(f"a lakehouse location must be a path or URI, not {type(location).__name__}")
    text = str(location)
    if is_uri(text):
        return LakeURI(text)
    return Path(text).expanduser().resolve()


def lake_root(lake: str | os.PathLike | None = None):
    """Resolve the lakehouse root: explicit argument, then env, then default.

    A local folder (``Path``) or a URI (:class:`LakeURI`); ``str()`` of either
    is what Spark and delta-rs take.
    """
    if lake:
        return as_location(lake)
    env = os.environ.get("DATAMILL_LAKE")
    if env:
        return as_location(env)
    return DEFAULT_LAKE


def lake_path(lake: str | os.PathLike | None, *parts: str):
    """A location inside the lakehouse (``lake_path(root, "_system", "ledger")``),
    local or URI alike; ``str()`` it for Spark and delta-rs."""
    loc = lake_root(lake)
    for p in parts:
        loc = loc / p
    return loc


def local_path(lake: str | os.PathLike | None, *parts: str) -> Path:
    """A location inside a lakehouse that must be on the local file system
    (files written with Python's own I/O: reports, quality models, labels);
    ``file://`` roots qualify, an object-store root is refused by name instead
    of being turned into a folder under the working directory."""
    loc = lake_root(lake)
    if isinstance(loc, LakeURI):
        if loc.scheme != "file":
            raise ValueError(f"{loc} is not on the local file system; this needs a local "
                             "lakehouse (a folder or a file:// URI)")
        loc = Path(os.fspath(loc))
    for p in parts:
        loc = loc / p
    return loc
