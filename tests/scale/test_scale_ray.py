"""whybox.scale on Ray Data: the same files as the local backend, and resumable.

Ray is slow to start (a local instance, then actors that import torch), so this module
holds few jobs; it is skipped when Ray Data is not installed.
"""

from __future__ import annotations

import filecmp
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from whybox.scale import load_summaries  # noqa: E402
from whybox.scale import shards as shard_io  # noqa: E402

HERE = Path(__file__).parent
if "_scale_jobs" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("_scale_jobs", HERE / "_scale_jobs.py")
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["_scale_jobs"] = _module  # the fingerprint names the dataset class
    _spec.loader.exec_module(_module)
jobs = sys.modules["_scale_jobs"]

# Ray workers cannot import the test helpers: send RowDataset by value
ray.cloudpickle.register_pickle_by_value(jobs)

# two actors of half a CPU, plus the CPU attribute_dataset adds for the reading tasks:
# the local Ray instance it starts has 2 CPUs
RAY = {"backend": "ray", "num_workers": 2, "num_cpus": 0.5}


def _ray_starts() -> str | None:
    """Why a local Ray instance cannot start on this machine (``None``: it can).

    Probed in a child process, under a time limit, so a machine where Ray hangs or fails at
    start-up (containers without shared memory, ...) skips these tests instead of stalling.
    """
    import subprocess

    probe = "import ray; ray.init(num_cpus=1, include_dashboard=False); ray.shutdown()"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=240
        )
    except subprocess.TimeoutExpired:
        return "a local Ray instance did not start within 240 s"
    if proc.returncode != 0:
        return f"a local Ray instance does not start here: {proc.stderr[-500:]}"
    return None


@pytest.fixture(scope="module", autouse=True)
def _ray_session():
    reason = _ray_starts()
    if reason is not None:
        pytest.skip(reason)
    yield
    ray.shutdown()


def _same_files(a: Path, b: Path, *, shards_only: bool = False) -> None:
    names = sorted(n for n in os.listdir(a) if not shards_only or n.startswith("shard-"))
    assert names == sorted(n for n in os.listdir(b) if not shards_only or n.startswith("shard-"))
    differ = [n for n in names if not filecmp.cmp(a / n, b / n, shallow=False)]
    assert differ == []


def test_ray_data_backend_resumes_to_the_local_files(tmp_path):
    """Local vs ray.data: identical files (shards, summaries, manifest), also after a worker
    failure and a resume on Ray."""
    n = 45  # 6 shards of 8, the last one short
    local = jobs.run(str(tmp_path / "local"), jobs.RowDataset(n))
    data = jobs.RowDataset(n)
    data.fail_at = 8 * 3 + 2  # a read task of shard 3 raises
    with pytest.raises(Exception, match="worker failure"):
        jobs.run(str(tmp_path / "ray"), data, **RAY)
    assert not ray.is_initialized()  # the job started it, and dropped it on failure
    assert shard_io.valid_shard(tmp_path / "ray", 3) is None
    assert shard_io.read_json(tmp_path / "ray" / "manifest.json")["status"] == "running"
    data.fail_at = None
    result = jobs.run(str(tmp_path / "ray"), data, **RAY)
    assert ray.cluster_resources()["CPU"] == 2
    assert 1 <= result.computed <= 6 and result.n_shards == 6
    _same_files(tmp_path / "local", tmp_path / "ray")
    a, b = load_summaries(local.out), load_summaries(result.out)
    np.testing.assert_array_equal(a["all"]["abs_mean"], b["all"]["abs_mean"])


def test_a_ray_dataset_source_on_both_backends(tmp_path, monkeypatch):
    """A ray.data.Dataset source: the local backend iterates it, the Ray backend maps it;
    both write the shards of the same rows as a torch Dataset. A Ray without
    ``Dataset.zip`` (deprecated) streams it from the driver to the actors instead."""
    n = 30
    data = jobs.RowDataset(n)
    rows = [data[i] for i in range(n)]
    source = ray.data.from_items([{"inputs": x.numpy(), "labels": label} for x, label in rows])
    jobs.run(str(tmp_path / "torch"), data)
    local = jobs.run(str(tmp_path / "local"), source)
    assert local.n_shards == 4
    remote = jobs.run(str(tmp_path / "ray"), source, **RAY)
    assert remote.computed == 4
    _same_files(tmp_path / "local", tmp_path / "ray")
    _same_files(tmp_path / "torch", tmp_path / "local", shards_only=True)
    # order and progress settings of the source are left as they were
    assert source.context.execution_options.preserve_order is False
    monkeypatch.delattr(ray.data.Dataset, "zip")
    driver = jobs.run(str(tmp_path / "driver"), source, **RAY)
    assert driver.computed == 4
    _same_files(tmp_path / "local", tmp_path / "driver")


def test_an_iterable_source_runs_on_ray_actors(tmp_path):
    """A DataLoader cannot be read by Ray tasks: the driver sends its batches to actors."""
    from torch.utils.data import DataLoader

    data = jobs.RowDataset(20)
    jobs.run(str(tmp_path / "local"), DataLoader(data, batch_size=8))
    result = jobs.run(str(tmp_path / "ray"), DataLoader(data, batch_size=8), **RAY)
    assert result.computed == 3
    _same_files(tmp_path / "local", tmp_path / "ray")


def test_a_killed_driver_resumes_on_ray_to_the_local_files(tmp_path):
    """The driver process dies (os._exit, no clean-up) right after a shard is written on
    Ray; a new Ray job resumes from the shards on disk and writes the local backend's files."""
    import subprocess

    local = jobs.run(str(tmp_path / "local"), jobs.RowDataset(60))
    killed = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, str(HERE / "_scale_jobs.py"), str(killed), "2", "ray"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert shard_io.read_json(killed / "manifest.json")["status"] == "running"
    written = [shard_io.valid_shard(killed, i) is not None for i in range(8)]
    assert written[:3] == [True] * 3 and not all(written)
    result = jobs.run(str(killed), jobs.RowDataset(60), **RAY)
    assert result.computed == 8 - sum(written)
    _same_files(tmp_path / "local", killed)
    np.testing.assert_array_equal(
        load_summaries(local.out)["all"]["abs_mean"], load_summaries(result.out)["all"]["abs_mean"]
    )
