"""whybox.scale: shards equal one call, resume is byte-identical, memory stays flat."""

from __future__ import annotations

import filecmp
import gc
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import whybox
from whybox.core.validation import ParameterError
from whybox.scale import attribute_dataset, iter_shards, load_summaries, read_field
from whybox.scale import shards as shard_io

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("_scale_jobs", HERE / "_scale_jobs.py")
jobs = importlib.util.module_from_spec(_spec)
sys.modules["_scale_jobs"] = jobs  # the fingerprint names the dataset class by qualname
_spec.loader.exec_module(jobs)


def _same_files(a: Path, b: Path) -> None:
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b))
    differ = [n for n in names if not filecmp.cmp(a / n, b / n, shallow=False)]
    assert differ == []


def _dense(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = jobs.RowDataset(n)
    x = torch.stack([data[i][0] for i in range(n)])
    return x, torch.arange(n) % jobs.N_CLASSES


def test_shards_and_summaries_equal_one_call(tmp_path):
    n = 45  # 6 shards of 8, the last one short
    result = jobs.run(str(tmp_path / "job"), jobs.RowDataset(n))
    assert (result.n_rows, result.n_shards, result.computed) == (n, 6, 6)
    x, y = _dense(n)
    model = jobs.make_model()
    one = whybox.explain(model, x, method="integrated_gradients", target=y, n_steps=6)
    attributions = torch.from_numpy(read_field(result.out, "attributions"))
    torch.testing.assert_close(attributions, one.attributions, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        torch.from_numpy(read_field(result.out, "deltas")), one.delta, rtol=0, atol=1e-5
    )
    np.testing.assert_array_equal(read_field(result.out, "ids"), np.arange(n))
    np.testing.assert_array_equal(read_field(result.out, "targets"), y.numpy())
    np.testing.assert_array_equal(read_field(result.out, "labels"), y.numpy())
    np.testing.assert_array_equal(read_field(result.out, "predictions"), model(x).argmax(1).numpy())

    full = one.attributions.double()
    summaries = load_summaries(result.out)
    for key, rows in [(None, slice(None))] + [(c, y == c) for c in range(jobs.N_CLASSES)]:
        got = summaries["all"] if key is None else summaries["classes"][key]
        part = full[rows]
        assert got["count"] == part.shape[0]
        np.testing.assert_allclose(got["mean"], part.mean(0).numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(
            got["var"], part.var(0, unbiased=False).numpy(), rtol=1e-4, atol=1e-9
        )
        np.testing.assert_allclose(got["abs_mean"], part.abs().mean(0).numpy(), rtol=1e-5)
    assert set(summaries["classes"]) == {0, 1, 2}


def test_dataloader_and_iterable_write_the_same_shards(tmp_path):
    data = jobs.RowDataset(30)
    jobs.run(str(tmp_path / "dataset"), data)
    jobs.run(str(tmp_path / "loader"), DataLoader(data, batch_size=8))
    batches = [b for b in DataLoader(data, batch_size=8)]
    jobs.run(str(tmp_path / "iterable"), iter(batches))
    for other in ("loader", "iterable"):
        for shard in range(4):
            for field in ("attributions", "ids", "labels", "deltas"):
                name = f"shard-{shard:05d}.{field}.npy"
                assert filecmp.cmp(tmp_path / "dataset" / name, tmp_path / other / name, False)


def test_a_model_factory_writes_the_same_shards(tmp_path):
    from whybox.scale import ModelFactory

    jobs.run(str(tmp_path / "module"), jobs.RowDataset(20))
    attribute_dataset(jobs.RowDataset(20), "integrated_gradients", ModelFactory(jobs.make_model),
                      out=tmp_path / "factory", shard_rows=8, show_progress=False, n_steps=6)  # fmt: skip
    _same_files(tmp_path / "module", tmp_path / "factory")


def test_several_inputs_and_no_labels(tmp_path):
    torch.manual_seed(3)
    x1, x2 = torch.randn(20, 4), torch.randn(20, 2)

    def model(a, b):
        return torch.cat([a, b], dim=1) @ torch.ones(6, 2)

    batches = [((x1[i : i + 8], x2[i : i + 8]),) for i in range(0, 20, 8)]
    result = attribute_dataset(
        batches, "saliency", model, out=tmp_path / "job", show_progress=False
    )
    one = whybox.explain(model, (x1, x2), method="saliency", target=model(x1, x2).argmax(1))
    for i in range(2):
        got = torch.from_numpy(read_field(result.out, f"attributions_{i}"))
        torch.testing.assert_close(got, one.attributions[i])
        np.testing.assert_allclose(
            result.summaries["all"]["abs_mean"][i], one.attributions[i].abs().mean(0).numpy()
        )


def test_resume_after_a_failing_worker_is_byte_identical(tmp_path):
    jobs.run(str(tmp_path / "clean"), jobs.RowDataset(60))
    data = jobs.RowDataset(60)
    data.fail_at = 8 * 4 + 3  # inside shard 4
    with pytest.raises(RuntimeError, match="worker failure"):
        jobs.run(str(tmp_path / "broken"), data)
    assert shard_io.valid_shard(tmp_path / "broken", 3) is not None
    assert shard_io.valid_shard(tmp_path / "broken", 4) is None
    data.fail_at = None
    result = jobs.run(str(tmp_path / "broken"), data)
    assert result.computed == 8 - 4  # shards 0-3 were resumed, not recomputed
    _same_files(tmp_path / "clean", tmp_path / "broken")


def test_resume_after_a_killed_process_is_byte_identical(tmp_path):
    jobs.run(str(tmp_path / "clean"), jobs.RowDataset(60))
    killed = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, str(HERE / "_scale_jobs.py"), str(killed), str(8 * 5 + 1)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    assert shard_io.read_json(killed / "manifest.json")["status"] == "running"
    assert [shard_io.valid_shard(killed, i) is not None for i in range(6)] == [True] * 5 + [False]
    result = jobs.run(str(killed), jobs.RowDataset(60))
    assert result.computed == 8 - 5
    _same_files(tmp_path / "clean", killed)


def test_a_half_written_file_is_never_read_as_a_shard(tmp_path, monkeypatch):
    jobs.run(str(tmp_path / "clean"), jobs.RowDataset(40))
    out = tmp_path / "crashed"
    real_replace = os.replace
    calls = {"n": 0}

    def crash_on_the_17th(src, dst):
        calls["n"] += 1
        if calls["n"] == 17:  # mid-shard: some of its files moved in, the rest not
            raise OSError("disk gone")
        real_replace(src, dst)

    monkeypatch.setattr(shard_io.os, "replace", crash_on_the_17th)
    with pytest.raises(OSError, match="disk gone"):
        jobs.run(str(out), jobs.RowDataset(40))
    monkeypatch.setattr(shard_io.os, "replace", real_replace)
    assert any(p.name.startswith(".") for p in out.iterdir())  # the temp file it left
    # and a shard whose data file was cut short after its marker was written
    victim = out / "shard-00000.attributions.npy"
    victim.write_bytes(victim.read_bytes()[:-7])
    (out / ".shard-00001.ids.npy.tmp-0123abcd").write_bytes(b"\x93NUMPY garbage")
    result = jobs.run(str(out), jobs.RowDataset(40))
    assert result.computed >= 2  # shard 0 (cut short) and the crashed one
    _same_files(tmp_path / "clean", out)


def test_a_resume_with_other_settings_is_refused(tmp_path):
    out = str(tmp_path / "job")
    jobs.run(out, jobs.RowDataset(20))
    with pytest.raises(ParameterError, match="'out' parameter.*other settings: options"):
        jobs.run(out, jobs.RowDataset(20), n_steps=7)
    with pytest.raises(ParameterError, match="shard_rows"):
        jobs.run(out, jobs.RowDataset(20), shard_rows=5)
    with pytest.raises(ParameterError, match="source"):
        jobs.run(out, jobs.RowDataset(21))
    model = jobs.make_model()
    with torch.no_grad():
        model[0].bias.add_(1.0)  # other weights, same class
    with pytest.raises(ParameterError, match="model"):
        attribute_dataset(jobs.RowDataset(20), "integrated_gradients", model, out=out,
                          shard_rows=8, show_progress=False, n_steps=6)  # fmt: skip
    result = jobs.run(out, jobs.RowDataset(20), n_steps=7, resume=False)  # start over
    assert result.computed == result.n_shards == 3


def test_stochastic_methods_are_seeded_per_shard(tmp_path):
    def go(name):
        return attribute_dataset(jobs.RowDataset(24), "noise_tunnel", jobs.make_model(),
                                 out=tmp_path / name, shard_rows=8, show_progress=False,
                                 nt_samples=3, seed=5)  # fmt: skip

    go("a")
    go("b")
    _same_files(tmp_path / "a", tmp_path / "b")
    shards = list(iter_shards(tmp_path / "a"))
    assert not np.array_equal(shards[0]["attributions"], shards[1]["attributions"])


def _live_tensor_bytes() -> int:
    # every tensor the process holds (type(), not isinstance: no deprecated attribute reads)
    objects = gc.get_objects()
    return sum(o.untyped_storage().nbytes() for o in objects if issubclass(type(o), torch.Tensor))


def _peak_while_streaming(tmp_path: Path, n: int) -> int:
    data = jobs.RowDataset(n, features=64)
    peak = {"bytes": 0}
    baseline = _live_tensor_bytes()

    def on_read(i):
        if i % (32 * 4) == 0:  # at the start of every 4th shard
            peak["bytes"] = max(peak["bytes"], _live_tensor_bytes() - baseline)

    data.on_read = on_read
    model = torch.nn.Sequential(torch.nn.Linear(64, 3)).eval()
    attribute_dataset(data, "integrated_gradients", model, out=tmp_path / f"n{n}",
                      shard_rows=32, chunk_size=16, n_steps=2, show_progress=False)  # fmt: skip
    return peak["bytes"]


def test_memory_stays_flat_for_a_dataset_far_larger_than_the_chunk_budget(tmp_path):
    gc.collect()
    shard_bytes = 32 * 64 * 4
    small = _peak_while_streaming(tmp_path, 32 * 9)
    large = _peak_while_streaming(tmp_path, 32 * 50)  # 100x the chunk budget of 16 rows
    whole = 32 * 50 * 64 * 4 * 2  # inputs and attributions of every example
    assert small > 0  # the accounting sees the shard in flight
    assert large <= small + 2 * shard_bytes, (small, large)
    assert large < whole / 10, (large, whole)


def test_ray_backend_needs_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r"whybox\[ray\]"):
        jobs.run(str(tmp_path / "job"), jobs.RowDataset(8), backend="ray")


def test_cli_runs_a_torchscript_model_over_a_npy_file(tmp_path, capsys):
    from whybox.scale import explain_dataset_cli

    x, y = _dense(20)
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "y.npy", y.numpy())
    torch.jit.script(jobs.make_model()).save(str(tmp_path / "model.pt"))
    code = explain_dataset_cli([
        "--model", str(tmp_path / "model.pt"), "--data", str(tmp_path / "x.npy"),
        "--labels", str(tmp_path / "y.npy"), "--out", str(tmp_path / "job"),
        "--shard-rows", "8", "--option", "n_steps=6",
    ])  # fmt: skip
    assert code == 0 and "20 examples in 3 shards" in capsys.readouterr().out
    one = whybox.explain(jobs.make_model(), x, method="integrated_gradients", target=y, n_steps=6)
    torch.testing.assert_close(
        torch.from_numpy(read_field(tmp_path / "job", "attributions")), one.attributions,
        rtol=1e-5, atol=1e-6,
    )  # fmt: skip
