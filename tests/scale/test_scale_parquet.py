"""whybox.scale Parquet shards: the same numbers as ``.npy`` shards, resumable byte for byte."""

from __future__ import annotations

import filecmp
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from whybox.core.validation import ParameterError  # noqa: E402
from whybox.scale import iter_shards, read_field  # noqa: E402
from whybox.scale import shards as shard_io  # noqa: E402

HERE = Path(__file__).parent
if "_scale_jobs" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("_scale_jobs", HERE / "_scale_jobs.py")
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["_scale_jobs"] = _module
    _spec.loader.exec_module(_module)
jobs = sys.modules["_scale_jobs"]


def test_parquet_shards_round_trip_and_equal_npy(tmp_path):
    npy = jobs.run(str(tmp_path / "npy"), jobs.RowDataset(30))
    pq = jobs.run(str(tmp_path / "pq"), jobs.RowDataset(30), shard_format="parquet")
    assert sorted(p.name for p in pq.out.glob("shard-*.parquet")) == [
        f"shard-{i:05d}.parquet" for i in range(4)
    ]
    assert not list(pq.out.glob("shard-*.npy"))
    for name in ("attributions", "ids", "labels", "targets", "predictions", "deltas"):
        a, b = read_field(npy.out, name), read_field(pq.out, name)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    for x, y in zip(iter_shards(npy.out), iter_shards(pq.out), strict=True):
        assert sorted(x) == sorted(y)
    for name in os.listdir(npy.out):  # the summaries: the same files
        if name.startswith("summar"):
            assert filecmp.cmp(npy.out / name, pq.out / name, shallow=False), name


def test_parquet_several_inputs_keep_their_shapes(tmp_path):
    import torch

    from whybox.scale import attribute_dataset

    torch.manual_seed(3)
    x1, x2 = torch.randn(12, 2, 3), torch.randn(12, 2)

    def model(a, b):
        return a.flatten(1).sum(1, keepdim=True) * torch.ones(1, 2) + b

    batches = [((x1[i : i + 5], x2[i : i + 5]),) for i in range(0, 12, 5)]
    out = attribute_dataset(batches, "saliency", model, out=tmp_path / "job",
                            show_progress=False, shard_format="parquet")  # fmt: skip
    assert read_field(out.out, "attributions_0").shape == (12, 2, 3)
    assert read_field(out.out, "attributions_1").shape == (12, 2)


def test_parquet_resume_is_byte_identical(tmp_path):
    jobs.run(str(tmp_path / "clean"), jobs.RowDataset(40), shard_format="parquet")
    data = jobs.RowDataset(40)
    data.fail_at = 8 * 2 + 1
    with pytest.raises(RuntimeError, match="worker failure"):
        jobs.run(str(tmp_path / "broken"), data, shard_format="parquet")
    assert shard_io.valid_shard(tmp_path / "broken", 1) is not None
    data.fail_at = None
    result = jobs.run(str(tmp_path / "broken"), data, shard_format="parquet")
    assert result.computed == 3
    names = sorted(os.listdir(tmp_path / "clean"))
    assert names == sorted(os.listdir(tmp_path / "broken"))
    for name in names:
        assert filecmp.cmp(tmp_path / "clean" / name, tmp_path / "broken" / name, False), name
    with pytest.raises(ParameterError, match="shard_format"):
        jobs.run(str(tmp_path / "clean"), jobs.RowDataset(40))  # an npy resume of it
    with pytest.raises(ParameterError, match="shard_format"):
        jobs.run(str(tmp_path / "x"), jobs.RowDataset(8), shard_format="csv")
