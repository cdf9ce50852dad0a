"""Whole-dataset attribution: stream a dataset through any registered method into shards.

:func:`attribute_dataset` reads the source one shard at a time, attributes it with the
method built once by :func:`whybox.build`, writes the shard atomically (see
:mod:`whybox.scale.shards`), updates the streaming summaries, and lets the shard go: memory
holds one shard (a few in flight on Ray), whatever the dataset's size.

Resuming: the manifest records a fingerprint of the job (method, options, target, chunk
size, shard size, the model's class and weights, the source's type and length). A second
call with the same ``out`` skips every whole shard and computes the rest; a call whose
fingerprint differs is refused. Stochastic methods (those taking ``seed``) get the seed
``seed + shard index`` per shard, so every shard is reproducible on its own.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from whybox.core.progress import progress
from whybox.core.validation import check_bool, check_int, fail

from . import shards
from .dataset import Batch, describe_source, is_map_style, is_ray_dataset, iter_batches
from .summaries import StreamingSummaries, load_summaries

__all__ = ["ModelFactory", "JobResult", "attribute_dataset"]

_OWNER = "attribute_dataset"
_FORMAT = 1
_TARGETS = ("auto", "labels", "predicted")


@dataclass(frozen=True)
class ModelFactory:
    """A picklable recipe for the model, so that each worker builds it once.

    Parameters
    ----------
    build : callable
        A top-level (picklable) function returning the model, e.g. ``torchvision.models.resnet18``.
    args, kwargs
        Its arguments.
    """

    build: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> Any:
        return self.build(*self.args, **self.kwargs)


def _materialise(model: Any) -> Any:
    model = model() if isinstance(model, ModelFactory) else model
    if not callable(model):
        fail(_OWNER, "model", "an nn.Module, a callable or a ModelFactory", model, type_error=True)
    return model


# -- fingerprint ------------------------------------------------------------------------
def _tensor_digest(t: Tensor) -> str:
    data = t.detach().cpu().contiguous()
    return hashlib.sha256(
        data.view(torch.uint8).numpy().tobytes() if data.numel() else b""
    ).hexdigest()


def _model_digest(model: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"type": f"{type(model).__module__}.{type(model).__qualname__}"}
    if isinstance(model, nn.Module):
        digest = hashlib.sha256()
        for name, value in model.state_dict().items():
            digest.update(name.encode())
            digest.update(_tensor_digest(value).encode())
        info["state"] = digest.hexdigest()
    return info


def _describe(value: Any) -> Any:
    """A JSON-able, content-based description of an option (tensors by hash)."""
    if isinstance(value, Tensor):
        return {
            "tensor": list(value.shape),
            "dtype": str(value.dtype),
            "sha256": _tensor_digest(value),
        }
    if isinstance(value, nn.Module):
        return _model_digest(value)
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _describe(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if callable(value):
        return f"callable {getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', '?')}"
    return repr(value)


# -- one shard --------------------------------------------------------------------------
class ShardWorker:
    """Builds the model and method once; turns a :class:`Batch` into a shard's arrays.

    Used in-process by the local backend and inside each actor by the Ray backend, so both
    write the same numbers.
    """

    def __init__(
        self,
        model: Any,
        method: str,
        method_options: dict[str, Any],
        *,
        target: Any,
        chunk_size: Any,
        seeded: bool,
    ) -> None:
        import whybox

        self.model = _materialise(model)
        self.built, self.call_options = whybox.build(method, self.model, **method_options)
        _, call_names = type(self.built).option_names()
        if "chunk_size" in call_names:
            self.call_options["chunk_size"] = chunk_size
        if "show_progress" in call_names:
            self.call_options["show_progress"] = False  # the job draws one bar over shards
        self.target = target
        self.seeded = seeded
        self.base_seed = int(method_options.get("seed", 0) or 0)

    def _device(self) -> torch.device | None:
        if isinstance(self.model, nn.Module):
            for tensor in self.model.parameters():
                return tensor.device
        return None

    def _outputs(self, inputs: tuple[Tensor, ...]) -> Tensor | None:
        extra = self.call_options.get("forward_args")
        if extra is None:
            extra = ()
        elif not isinstance(extra, tuple):
            extra = (extra,)
        with torch.no_grad():
            outputs = self.model(*inputs, *extra)
        return outputs if isinstance(outputs, Tensor) else None

    def compute(self, batch: Batch) -> dict[str, np.ndarray]:
        """The shard's fields: ``attributions`` (``attributions_<i>`` for several),
        ``ids``, and where defined ``labels``, ``targets``, ``predictions``, ``deltas``."""
        device = self._device()
        if device is not None and device.type != "cpu":  # the source's rows go to the model
            batch = Batch(
                batch.index,
                tuple(t.to(device) for t in batch.inputs)
                if isinstance(batch.inputs, tuple)
                else batch.inputs.to(device),
                None if batch.labels is None else batch.labels.to(device),
                batch.ids,
            )
        inputs = batch.inputs if isinstance(batch.inputs, tuple) else (batch.inputs,)
        fields: dict[str, np.ndarray] = {"ids": batch.ids.numpy()}
        if batch.labels is not None:
            fields["labels"] = batch.labels.cpu().numpy()
        outputs = self._outputs(inputs)
        predicted = None
        if outputs is not None and outputs.dim() == 2 and outputs.shape[1] > 1:
            predicted = outputs.argmax(dim=1)
            fields["predictions"] = predicted.cpu().numpy()
        elif outputs is not None and outputs.shape[:1] == (batch.rows,):
            fields["predictions"] = outputs.reshape(batch.rows, -1).squeeze(1).cpu().numpy()
        target = self._target(batch, predicted)
        options = dict(self.call_options)
        if self.seeded:
            options["seed"] = self.base_seed + batch.index
        if target is not None:
            options["target"] = target
        explanation = self.built.attribute(batch.inputs, **options)
        attributions = explanation.attributions
        if isinstance(attributions, (tuple, list)):
            for i, a in enumerate(attributions):
                fields[f"attributions_{i}"] = a.detach().cpu().numpy()
        else:
            fields["attributions"] = attributions.detach().cpu().numpy()
        if isinstance(explanation.delta, Tensor):
            fields["deltas"] = explanation.delta.detach().cpu().reshape(-1).numpy()
        if isinstance(target, Tensor):
            fields["targets"] = target.cpu().numpy()
        elif isinstance(target, int):
            fields["targets"] = np.full(batch.rows, target, dtype=np.int64)
        return fields

    def _target(self, batch: Batch, predicted: Tensor | None) -> Any:
        spec = self.target
        if spec == "auto":
            spec = "labels" if batch.labels is not None else "predicted"
        if spec == "labels":
            if batch.labels is None:
                fail(_OWNER, "target", "'labels' only for a source with labels", "a batch without")
            return batch.labels.to(torch.int64)
        if spec == "predicted":
            if predicted is None:
                fail(_OWNER, "target", "'predicted' only for a model with (N, C) outputs",
                     "other outputs")  # fmt: skip
            return predicted
        return spec


# -- the job ----------------------------------------------------------------------------
@dataclass
class JobResult:
    """A finished job: where its shards are, and its summaries.

    Attributes
    ----------
    out : Path
        The job folder.
    n_rows, n_shards : int
        Examples and shards written.
    computed : int
        Shards computed by this call (the rest were resumed from disk).
    summaries : dict
        As :func:`whybox.scale.load_summaries`.
    """

    out: Path
    n_rows: int
    n_shards: int
    computed: int
    summaries: dict[str, Any]

    def shards(self) -> Iterator[dict[str, np.ndarray]]:
        """Each shard's fields, in order (see :func:`whybox.scale.iter_shards`)."""
        return shards.iter_shards(self.out)

    def read(self, name: str) -> np.ndarray:
        """One field over every shard, ``(N, ...)`` (loads it whole)."""
        return shards.read_field(self.out, name)


class _Done:
    """Which shards are already whole (checked lazily, each once)."""

    def __init__(self, out: Path, resume: bool) -> None:
        self.out, self.resume, self.markers = out, resume, {}

    def __contains__(self, index: object) -> bool:
        if not self.resume or not isinstance(index, int):
            return False
        if index not in self.markers:
            self.markers[index] = shards.valid_shard(self.out, index)
        return self.markers[index] is not None


def _prepare_out(out: Path, fingerprint: str, job: dict[str, Any], *, resume: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    shards.clean_temp_files(out)
    manifest = shards.read_json(out / shards.MANIFEST)
    if manifest is not None and resume:
        if not isinstance(manifest, dict) or manifest.get("fingerprint") != fingerprint:
            old = manifest.get("job", {}) if isinstance(manifest, dict) else {}
            changed = sorted(k for k in set(old) | set(job) if old.get(k) != job.get(k))
            fail(
                _OWNER,
                "out",
                "a new folder, the folder of this same job (to resume it), or resume=False "
                "(to overwrite it)",
                f"{str(out)!r}, which holds a job with other settings: {', '.join(changed)}",
                raw=True,
            )
    else:
        # starting over, or shards without a manifest (they cannot be trusted): drop ours
        shards.clean_temp_files(out, shards_too=True)
    running = {"format": _FORMAT, "fingerprint": fingerprint, "job": job, "status": "running"}
    shards.write_json(out / shards.MANIFEST, running)


def _shard_count(source: Any, shard_rows: int) -> int | None:
    """Shards the job will have, for the progress bar (``None``: unknown)."""
    if is_ray_dataset(source):  # len() of a ray.data.Dataset raises: count() it
        return math.ceil(source.count() / shard_rows)
    try:
        n = len(source)
    except TypeError:
        return None
    if isinstance(source, torch.utils.data.Dataset):
        return math.ceil(n / shard_rows)
    return n  # a DataLoader or a sized iterable: one shard per batch


def attribute_dataset(
    source: Any,
    method: str,
    model: Any,
    *,
    out: str | os.PathLike[str],
    target: Any = "auto",
    chunk_size: int | str | None = "auto",
    shard_rows: int = 256,
    resume: bool = True,
    show_progress: bool = True,
    backend: str = "local",
    shard_format: str = "npy",
    num_workers: int = 2,
    num_cpus: float = 1,
    num_gpus: float = 0,
    **method_options: Any,
) -> JobResult:
    """Attribute every example of a dataset, streaming results to resumable shards.

    Parameters
    ----------
    source : Dataset, DataLoader, iterable of batches, or ray.data.Dataset
        Batches of inputs ``(n, ...)`` (a tuple of them for several inputs), optionally with
        labels ``(n,)``; see :mod:`whybox.scale.dataset`.
    method : str
        A registered method name (:func:`whybox.available_methods`).
    model : nn.Module, callable or ModelFactory
        The model; a :class:`ModelFactory` is built once per worker.
    out : path
        The job folder (created): shards, ``manifest.json`` and the summaries.
    target : "auto", "labels", "predicted", int, tuple or None
        ``"labels"``: each example's label; ``"predicted"``: the model's arg-max class;
        ``"auto"``: labels when the source has them, else predicted; an int / tuple /
        ``None``: passed to the method as is.
    chunk_size : int, "auto" or None
        Rows per forward inside the method (the engine's one chunk policy).
    shard_rows : int
        Examples per shard for map-style and Ray datasets (a DataLoader's batches are kept).
    resume : bool
        Skip the shards of an interrupted run of the same job in ``out`` (``False``: start
        over, deleting its shards).
    show_progress : bool
        A progress bar over shards (needs ``tqdm``).
    backend : {"local", "ray"}
        ``"ray"`` runs the shards on a pool of Ray actors (the ``whybox[ray]`` extra): a
        map-style Dataset or a ``ray.data.Dataset`` through ``ray.data`` ``map_batches``
        (one shard per batch), another iterable read here and sent to the actors; either
        way the same files as ``"local"``. A local Ray instance is started when none runs.
    shard_format : {"npy", "parquet"}
        One ``.npy`` file per field of a shard, or one Parquet file per shard (the
        ``whybox[parquet]`` extra, pyarrow); :func:`whybox.scale.iter_shards` reads both.
    num_workers, num_cpus, num_gpus
        Ray only: actors in the pool (its ``concurrency``), and the CPUs / GPUs each one
        reserves.
    **method_options
        The method's options, as for :func:`whybox.explain` (``n_steps``, ``baselines``,
        ``layer``, ``seed``, ...).

    Returns
    -------
    JobResult
        Shard location, row and shard counts, and the summaries.

    Raises
    ------
    ValueError
        ``out`` holds a job with other settings (with ``resume=True``), or a bad option.
    ImportError
        ``backend="ray"`` without Ray installed, or Parquet shards without pyarrow.

    Notes
    -----
    A resumed job reads the source again from its start, so the source must yield the same
    examples in the same order (a DataLoader with ``shuffle=True`` needs a seeded
    ``generator``). Inputs move to the device of the model's parameters, one shard at a time.

    Examples
    --------
    >>> result = attribute_dataset(loader, "integrated_gradients", model, out="ig-run", n_steps=32)
    >>> result.summaries["all"]["abs_mean"].shape     # per feature
    """
    check_bool(_OWNER, "resume", resume)
    check_bool(_OWNER, "show_progress", show_progress)
    check_int(_OWNER, "shard_rows", shard_rows, minimum=1)
    if backend not in ("local", "ray"):
        fail(_OWNER, "backend", "'local' or 'ray'", backend)
    if shard_format not in shards.FORMATS:
        fail(_OWNER, "shard_format", f"one of {shards.FORMATS}", shard_format)
    if shard_format == "parquet":
        shards.require_pyarrow()
    is_str_target = isinstance(target, str)
    if is_str_target and target not in _TARGETS:
        fail(_OWNER, "target", f"one of {_TARGETS}, an int, a tuple or None", target)
    if not (is_str_target or target is None or isinstance(target, (int, tuple))):
        fail(_OWNER, "target", f"one of {_TARGETS}, an int, a tuple or None (per-example "
             "targets come from the source's labels)", target)  # fmt: skip
    if backend == "ray":
        from .ray_backend import numbered_by_ray, require_ray

        require_ray()

    import whybox

    local_model = _materialise(model)
    method_class = whybox.get_method(method)
    seeded = "seed" in method_class.option_names()[1]
    job = {
        "method": method,
        "options": _describe(method_options),
        "target": _describe(target),
        "chunk_size": _describe(chunk_size),
        "shard_rows": shard_rows,
        "shard_format": shard_format,
        "model": _model_digest(local_model),
        "source": describe_source(source),
        "seeded": seeded,
        "whybox": whybox.__version__,  # another release may round differently
    }
    fingerprint = hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()
    folder = Path(out)
    _prepare_out(folder, fingerprint, job, resume=resume)
    worker_args = (method, method_options)
    worker_kwargs = {"target": target, "chunk_size": chunk_size, "seeded": seeded}

    done = _Done(folder, resume)
    total = _shard_count(source, shard_rows)
    if backend == "ray" and (is_map_style(source) or numbered_by_ray(source)):
        from .ray_backend import run_ray_data

        results = run_ray_data(source, model, worker_args, worker_kwargs, shard_rows=shard_rows,
                               done=done, num_workers=num_workers, num_cpus=num_cpus,
                               num_gpus=num_gpus)  # fmt: skip
    elif backend == "ray":
        from .ray_backend import run_ray

        items = _pending(iter_batches(source, shard_rows=shard_rows, skip=done), done)
        results = run_ray(items, model, worker_args, worker_kwargs, num_workers=num_workers,
                          num_cpus=num_cpus, num_gpus=num_gpus)  # fmt: skip
    else:
        items = _pending(iter_batches(source, shard_rows=shard_rows, skip=done), done)
        worker = ShardWorker(local_model, *worker_args, **worker_kwargs)
        results = ((index, None if b is None else worker.compute(b)) for index, b in items)

    summaries = StreamingSummaries()
    bar = progress(total, show_progress, "attribute_dataset", unit="shard")
    n_rows = n_shards = computed = 0
    fields: set[str] = set()
    try:
        for index, payload in results:
            if payload is None:  # resumed: read the written shard back, in order
                payload = shards.read_shard(folder, done.markers[index], mmap=True)
            else:
                shards.write_shard(folder, index, payload, shard_format=shard_format)
                computed += 1
            _summarise(summaries, payload)
            fields.update(payload)
            n_rows += int(payload["ids"].shape[0])
            n_shards += 1
            del payload  # one shard at a time
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    summaries.save(folder)
    shards.remove_shards_from(folder, n_shards)  # a longer earlier run's leftovers
    manifest = {
        "format": _FORMAT,
        "fingerprint": fingerprint,
        "job": job,
        "status": "complete",
        "n_shards": n_shards,
        "n_rows": n_rows,
        "fields": sorted(fields),
    }
    shards.write_json(folder / shards.MANIFEST, manifest)
    return JobResult(folder, n_rows, n_shards, computed, load_summaries(folder))


def _pending(
    batches: Iterator[tuple[int, Batch | None]], done: _Done
) -> Iterator[tuple[int, Batch | None]]:
    # an iterable source loads every batch; a written shard is not attributed again
    for index, batch in batches:
        yield index, (None if index in done else batch)


def _summarise(summaries: StreamingSummaries, payload: dict[str, np.ndarray]) -> None:
    if "attributions" in payload:
        names = ["attributions"]
    else:
        names = sorted((k for k in payload if k.startswith("attributions_")),
                       key=lambda k: int(k.rsplit("_", 1)[1]))  # fmt: skip
    # a resumed shard is memory-mapped read-only: copy (one shard) for torch
    attributions = [torch.from_numpy(np.array(payload[name])) for name in names]
    classes = None
    for key in ("labels", "predictions"):
        if key in payload and np.issubdtype(payload[key].dtype, np.integer):
            classes = torch.from_numpy(np.array(payload[key]))
            break
    summaries.update(attributions, classes=classes)
