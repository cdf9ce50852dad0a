"""The JSON every benchmark can write (``--json PATH``), read by ``readme_tables.py``.

One file per benchmark run::

    {
      "benchmark": "gradient" | "layer" | "perturbation" | "gpu",
      "generated": "2026-11-22T00:23:00+00:00",
      "command": "python benchmarks/run.py --quick",
      "quick": true,
      "elapsed_s": 57.0,
      "device": "cpu",
      "environment": {"torch": "...", "captum": "...", "cpu": "...", ...},
      "workloads": ["cnn32: SmallCNN (0.10M params), batch 4 x 3x32x32", ...],
      "rows": [{"workload": "cnn32", "label": "CNN 3x32x32 (batch 4)", "key": "ig50",
                "method": "IntegratedGradients n=50 ibs=None", "whybox_s": 0.1,
                "captum_s": 0.2, "floor_s": 0.09, "whybox_mb": 10.0, "captum_mb": 80.0,
                "equal": "yes", ...}, ...]
    }

Times are seconds (medians of interleaved rounds), memory is MB (``null`` when not
measured, a string when the probe failed). Ratios are left to the reader.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["ROW_FIELDS", "workload_label", "command_line", "write_results", "read_results"]

# the keys readme_tables.py relies on; rows may carry more
ROW_FIELDS = ("workload", "label", "key", "method", "whybox_s", "captum_s", "floor_s")

_LABELS = {"cnn32": "CNN 3x32x32", "cnn224": "CNN 3x224x224", "mlp12": "MLP 12 features"}


def workload_label(name: str, batch: int | None = None) -> str:
    """A human label for workload ``name`` (``"CNN 3x224x224"``), with its batch when > 1."""
    text = _LABELS.get(name, name)
    return f"{text} (batch {batch})" if batch and batch > 1 else text


def command_line(script: str) -> str:
    """``python benchmarks/<script> <this process's arguments>``."""
    return " ".join(["python", f"benchmarks/{script}", *sys.argv[1:]])


def write_results(
    path: Path,
    *,
    benchmark: str,
    rows: list[dict[str, Any]],
    environment: dict[str, str],
    quick: bool,
    elapsed_s: float,
    command: str,
    device: str = "cpu",
    workloads: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write one benchmark run as JSON to ``path`` (folders created as needed).

    Raises
    ------
    ValueError
        When a row lacks one of :data:`ROW_FIELDS`.
    """
    for row in rows:
        missing = [field for field in ROW_FIELDS if field not in row]
        if missing:
            raise ValueError(f"benchmark row {row!r} lacks {missing}")
    payload = {
        "benchmark": benchmark,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "quick": quick,
        "elapsed_s": round(elapsed_s, 1),
        "device": device,
        "environment": environment,
        "workloads": workloads or [],
        "rows": rows,
        **(extra or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n")


def read_results(path: Path) -> dict[str, Any]:
    """The payload written by :func:`write_results` (``rows`` checked for the needed keys).

    Raises
    ------
    ValueError
        When the file is not a benchmark result.
    """
    payload = json.loads(Path(path).read_text())
    if not isinstance(payload, dict) or not isinstance(payload.get("rows"), list):
        raise ValueError(f"{path}: not a benchmark result (no 'rows' list)")
    for row in payload["rows"]:
        missing = [field for field in ROW_FIELDS if field not in row]
        if missing:
            raise ValueError(f"{path}: a row lacks {missing}: {row!r}")
    return payload
