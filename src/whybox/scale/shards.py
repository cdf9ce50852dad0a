"""Sharded result files: atomic writes, a manifest, and readers that trust only whole shards.

Layout under ``out``::

    manifest.json                  job fingerprint, options, status, (when complete) shard list
    shard-00000.attributions.npy   one ``.npy`` file per field of a shard
    shard-00000.ids.npy
    shard-00000.json               the shard's marker: its rows, files, sizes and sha256

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
    "atomic_write_bytes",
    "write_json",
    "read_json",
    "write_shard",
    "read_shard",
    "shard_marker",
    "valid_shard",
    "iter_shards",
    "read_field",
    "clean_temp_files",
    "remove_shards_from",
]

MANIFEST = "manifest.json"
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


def write_shard(out: Path, index: int, fields: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Write one shard (each field a ``.npy`` file, then the marker), atomically per file.

    Parameters
    ----------
    out : Path
        The job folder.
    index : int
        The shard's position in the job (0, 1, ...).
    fields : mapping of str to ndarray
        ``{"attributions": (n, ...), "ids": (n,), ...}``; every array has ``n`` rows.

    Returns
    -------
    dict
        The marker's content: ``index``, ``rows`` and ``files`` (name -> file, bytes, sha256).
    """
    files: dict[str, dict[str, Any]] = {}
    rows = None
    for name, array in sorted(fields.items()):
        data = _npy_bytes(array)
        file = f"shard-{index:05d}.{name}.npy"
        atomic_write_bytes(out / file, data)
        files[name] = {"file": file, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        rows = int(array.shape[0]) if rows is None else rows
    marker = {"index": index, "rows": rows or 0, "files": files}
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
    """The fields of a whole shard, ``{name: (rows, ...) array}``."""
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
