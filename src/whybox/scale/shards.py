"""Sharded result files: atomic writes, a manifest, and readers that trust only whole shards.

Layout under ``out``::

    manifest.json                  job fingerprint, options, status, (when complete) shard list
    shard-00000.attributions.npy   one ``.npy`` file per field of a shard
    shard-00000.ids.npy
    shard-00000.json               the shard's marker: its rows, files, sizes and sha256

or, with ``shard_format="parquet"`` (the ``whybox[parquet]`` extra, pyarrow), one
``shard-00000.parquet`` file per shard holding every field as a column (a field of more
than one dimension as an ``arrow.fixed_shape_tensor`` column), next to the same marker.

Every file is written to a hidden temp file in the same folder and moved into place with
``os.replace`` (atomic on POSIX), and a shard's marker is written after its data files. A
shard counts as written only when its marker exists and every file it names has the recorded
size and hash, so a crash at any point leaves either a whole shard or one that is recomputed:
a half-written temp file is never read as a shard. No file holds a timestamp or a process id,
so an interrupted-then-resumed job writes the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MANIFEST",
    "FORMATS",
    "atomic_write_bytes",
    "write_json",
    "read_json",
    "write_shard",
    "read_shard",
    "shard_marker",
    "valid_shard",
    "iter_shards",
    "read_field",
    "require_pyarrow",
    "clean_temp_files",
    "remove_shards_from",
]

MANIFEST = "manifest.json"
FORMATS = ("npy", "parquet")
_TEMP = re.compile(r"^\..+\.tmp-[0-9a-f]+$")
_SHARD_FILE = re.compile(r"^(shard-\d{5,}\.|summary\.|summaries\.json$)")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file and ``os.replace``.

    Readers see the old file or the whole new one, never a part (the temp file is hidden,
    named ``.<name>.tmp-<hex>``, and ignored by every reader).
    """
    temp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    # No fsync (it cost a quarter of a small job's time): the rename is atomic against a
    # killed process, and after a power loss a file cut short fails the marker's sha256 on
    # resume, so its shard is recomputed rather than read.
    with open(temp, "wb") as handle:
        handle.write(data)
    os.replace(temp, path)


def _json_bytes(value: Any) -> bytes:
    # sorted keys and a fixed layout: equal content -> equal bytes
    return (json.dumps(value, sort_keys=True, indent=1) + "\n").encode()


def write_json(path: Path, value: Any) -> None:
    """Atomically write ``value`` as canonical JSON."""
    atomic_write_bytes(path, _json_bytes(value))


def read_json(path: Path) -> Any:
    """Read a JSON file (``None`` when missing or unreadable, e.g. a foreign file)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def shard_marker(out: Path, index: int) -> Path:
    """Path of shard ``index``'s marker file."""
    return out / f"shard-{index:05d}.json"


def require_pyarrow() -> Any:
    """Import pyarrow (and ``pyarrow.parquet``), or explain how to install it."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "shard_format='parquet' needs pyarrow: pip install 'whybox[parquet]' "
            "(or pip install pyarrow)."
        ) from error
    return pyarrow


def _parquet_bytes(fields: Mapping[str, np.ndarray]) -> bytes:
    pa = require_pyarrow()
    import pyarrow.parquet as pq

    columns = {}
    for name, array in sorted(fields.items()):
        array = np.ascontiguousarray(array)
        if array.ndim > 1:
            columns[name] = pa.FixedShapeTensorArray.from_numpy_ndarray(array)
        else:
            columns[name] = pa.array(array)
    buffer = io.BytesIO()
    # no timestamps in a Parquet file: equal tables -> equal bytes (for one pyarrow version)
    pq.write_table(pa.table(columns), buffer, compression="zstd")
    return buffer.getvalue()


def _read_parquet(path: Path, fields: Mapping[str, Any]) -> dict[str, np.ndarray]:
    require_pyarrow()
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    out: dict[str, np.ndarray] = {}
    for name, info in fields.items():
        column = table.column(name).combine_chunks()
        if len(info["shape"]) > 1:
            array = column.to_numpy_ndarray() if len(column) else np.empty((0,))
        else:
            array = column.to_numpy(zero_copy_only=False)
        out[name] = array.astype(info["dtype"], copy=False).reshape(info["shape"])
    return out


def write_shard(
    out: Path, index: int, fields: Mapping[str, np.ndarray], *, shard_format: str = "npy"
) -> dict[str, Any]:
    """Write one shard (its data files, then the marker), atomically per file.

    Parameters
    ----------
    out : Path
        The job folder.
    index : int
        The shard's position in the job (0, 1, ...).
    fields : mapping of str to ndarray
        ``{"attributions": (n, ...), "ids": (n,), ...}``; every array has ``n`` rows.
    shard_format : {"npy", "parquet"}
        One ``.npy`` file per field, or one Parquet file for the shard (needs pyarrow).

    Returns
    -------
    dict
        The marker's content: ``index``, ``rows``, ``files`` (name -> file, bytes, sha256)
        and, for Parquet, ``format`` and ``fields`` (name -> shape, dtype).
    """
    files: dict[str, dict[str, Any]] = {}
    rows = None
    for array in fields.values():
        rows = int(array.shape[0])
        break
    marker: dict[str, Any] = {"index": index, "rows": rows or 0, "files": files}
    if shard_format == "parquet":
        data = _parquet_bytes(fields)
        file = f"shard-{index:05d}.parquet"
        atomic_write_bytes(out / file, data)
        files["table"] = {
            "file": file,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        marker["format"] = "parquet"
        marker["fields"] = {
            name: {"shape": list(array.shape), "dtype": np.dtype(array.dtype).str}
            for name, array in sorted(fields.items())
        }
    else:
        for name, array in sorted(fields.items()):
            data = _npy_bytes(array)
            file = f"shard-{index:05d}.{name}.npy"
            atomic_write_bytes(out / file, data)
            files[name] = {"file": file, "bytes": len(data),
                           "sha256": hashlib.sha256(data).hexdigest()}  # fmt: skip
    write_json(shard_marker(out, index), marker)  # last: the shard is whole from here on
    return marker


def valid_shard(out: Path, index: int, *, check_hash: bool = True) -> dict[str, Any] | None:
    """The marker of shard ``index`` if the shard is whole (every file of the recorded size
    and hash), else ``None`` (missing, half written or corrupted: recompute it)."""
    marker = read_json(shard_marker(out, index))
    if not isinstance(marker, dict) or marker.get("index") != index:
        return None
    for entry in marker.get("files", {}).values():
        path = out / entry["file"]
        try:
            if path.stat().st_size != entry["bytes"]:
                return None
            if check_hash and hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
                return None
        except OSError:
            return None
    return marker


def read_shard(
    out: Path, marker: Mapping[str, Any], *, mmap: bool = False
) -> dict[str, np.ndarray]:
    """The fields of a whole shard, ``{name: (rows, ...) array}`` (``.npy`` or Parquet;
    ``mmap`` applies to ``.npy`` shards)."""
    if marker.get("format") == "parquet":
        return _read_parquet(out / marker["files"]["table"]["file"], marker["fields"])
    mode = "r" if mmap else None
    return {
        name: np.load(out / entry["file"], mmap_mode=mode, allow_pickle=False)
        for name, entry in marker["files"].items()
    }


def iter_shards(
    out: str | os.PathLike[str], *, mmap: bool = True
) -> Iterator[dict[str, np.ndarray]]:
    """Each shard of a completed job, in order, one at a time (memory-mapped by default).

    Parameters
    ----------
    out : path
        A job folder written by :func:`whybox.scale.attribute_dataset`.

    Yields
    ------
    dict of str to ndarray
        ``attributions`` (or ``attributions_0``, ... for several inputs) ``(n, ...)``,
        ``ids`` ``(n,)``, and where defined ``targets``, ``labels``, ``predictions``,
        ``deltas``, each ``(n,)``.
    """
    folder = Path(out)
    manifest = read_json(folder / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("status") != "complete":
        from whybox.core.validation import fail

        fail("iter_shards", "out", "the folder of a completed job", str(folder))
    for index in range(manifest["n_shards"]):
        marker = valid_shard(folder, index, check_hash=False)
        if marker is None:
            raise OSError(f"Shard {index} of the job in {folder} is missing or damaged.")
        yield read_shard(folder, marker, mmap=mmap)


def read_field(out: str | os.PathLike[str], name: str) -> np.ndarray:
    """One field of every shard, concatenated: ``(N, ...)`` (loads it all; for small jobs)."""
    parts = [shard[name] for shard in iter_shards(out)]
    return np.concatenate(parts) if parts else np.empty((0,))


def remove_shards_from(out: Path, first: int) -> None:
    """Remove the files of every shard numbered ``first`` or more."""
    for path in out.iterdir():
        match = re.match(r"^shard-(\d{5,})\.", path.name)
        if match and int(match.group(1)) >= first:
            path.unlink(missing_ok=True)


def clean_temp_files(out: Path, *, shards_too: bool = False) -> None:
    """Remove temp files left by a crash (and, with ``shards_too``, every shard file)."""
    for path in out.iterdir():
        if _TEMP.match(path.name) or (shards_too and _SHARD_FILE.match(path.name)):
            path.unlink(missing_ok=True)
