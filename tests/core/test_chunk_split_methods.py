"""Every registered method gives the same attributions before and after the chunk probe
splits its evaluations.

Since the probe may split an evaluation that fits in one automatic chunk (once the model
showed one output per row, :func:`whybox.core.chunks.probe_may_split`), the first call of a
method (probe cache cleared: one forward) and a later call (splits timed, maybe chosen) can
run the same rows in different forwards. On a model whose rows are independent that must
not change results; these tests hunt for methods where it does.

Automatic chunks are sized here by a small byte budget (``AUTO_ROWS`` input rows per chunk)
so the small test evaluations fit in one chunk and splits are near enough to be timed; the
row-mixing test uses the library's default budget.
"""

from __future__ import annotations

import math
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import whybox
from whybox import methods
from whybox.core import chunks

CALLS = 12  # the first call and 11 more: the probe has timed its splits by then
FLOAT32 = {"rtol": 1e-5, "atol": 1e-6}
FLOAT64 = {"rtol": 1e-10, "atol": 1e-12}
ATTENTION = ("attention_flow", "attention_rollout", "gradient_weighted_rollout")
CAMS = {
    "ablation_cam",
    "eigen_cam",
    "grad_cam",
    "grad_cam_plus_plus",
    "hires_cam",
    "layer_cam",
    "score_cam",
    "upsampled_grad_cam",
    "xgrad_cam",
    "guided_grad_cam",
}
LAYER = CAMS | {"layer_activation", "internal_influence", "layer_conductance", "neuron_conductance"}
METHODS = [name for name in whybox.available_methods() if name not in ATTENTION]


# -- models -------------------------------------------------------------------------------
class Rows(nn.Module):
    """Records the rows of every forward of ``net`` (thread safe)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.sizes: list[int] = []
        self.lock = threading.Lock()

    def forward(self, x: Tensor) -> Tensor:
        with self.lock:
            self.sizes.append(x.shape[0])
        return self.net(x)


def _cnn() -> Rows:
    torch.manual_seed(0)
    return Rows(
        nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 4, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 8 * 8, 3),
        )
    ).eval()


def _mlp() -> Rows:
    torch.manual_seed(0)
    return Rows(
        nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    ).eval()


def _grid(cells: int) -> Tensor:
    rows = torch.arange(16) * cells // 16
    return (rows[:, None] * cells + rows[None, :]).view(1, 1, 16, 16)


def _case(kind: str, dtype: torch.dtype = torch.float32) -> tuple[Rows, Tensor, dict]:
    """The model, a batch of 4 and the per-method options for ``kind`` (cnn / mlp)."""
    g = torch.Generator().manual_seed(1)
    if kind == "cnn":
        model, shape = _cnn(), (3, 16, 16)
        layer = model.net[3]
        extra = {
            "feature_mask": _grid(4),
            "four_groups": _grid(2),
            "window": {"sliding_window_shapes": (3, 4, 4), "strides": (3, 4, 4)},
            "neuron": (0, 2, 2),
        }
    else:
        model, shape = _mlp(), (20,)
        layer = model.net[2]
        extra = {
            "feature_mask": (torch.arange(20) // 2).view(1, 20),
            "four_groups": (torch.arange(20) // 5).view(1, 20),
            "window": {"sliding_window_shapes": (4,), "strides": (2,)},
            "neuron": (3,),
        }
    model = model.to(dtype)
    x = torch.randn((4,) + shape, generator=g).to(dtype)
    refs = torch.randn((3,) + shape, generator=g).to(dtype)
    extra.update(layer=layer, zeros=torch.zeros_like(x), refs=refs)
    return model, x, extra


def _options(name: str, extra: dict) -> dict[str, Any]:
    """Small, seeded options per method (see benchmarks/registry.py SPECS)."""
    no_delta = {"return_delta": False}
    table: dict[str, dict[str, Any]] = {
        "integrated_gradients": {"n_steps": 4, "baselines": extra["zeros"], **no_delta},
        "gradient_shap": {"n_samples": 3, "seed": 0, "baselines": extra["refs"], **no_delta},
        "deeplift": {"baselines": extra["zeros"], **no_delta},
        "deeplift_shap": {"baselines": extra["refs"], **no_delta},
        "lrp": no_delta,
        "internal_influence": {"n_steps": 4},
        "layer_conductance": {"n_steps": 4, **no_delta},
        "neuron_conductance": {"n_steps": 4, "neuron": extra["neuron"]},
        "feature_ablation": {"feature_mask": extra["feature_mask"]},
        "feature_permutation": {"feature_mask": extra["feature_mask"], "seed": 0},
        "occlusion": dict(extra["window"]),
        "shapley_values": {"feature_mask": extra["four_groups"]},
        "shapley_value_sampling": {
            "feature_mask": extra["feature_mask"],
            "n_samples": 2,
            "seed": 0,
        },
        "lime": {"feature_mask": extra["feature_mask"], "n_samples": 24, "seed": 0},
        "kernel_shap": {"feature_mask": extra["feature_mask"], "n_samples": 24, "seed": 0},
    }
    options = dict(table.get(name, {}))
    if name in LAYER:
        options["layer"] = extra["layer"]
    if name != "layer_activation":
        options["target"] = 1
    return options


def _method(name: str, model: nn.Module, extra: dict) -> tuple[Any, dict[str, Any]]:
    if name == "noise_tunnel":
        inner = methods.IntegratedGradients(model)
        call = {"nt_samples": 2, "stdevs": 0.1, "seed": 0, "n_steps": 4, "return_delta": False}
        return methods.NoiseTunnel(inner), {**call, "target": 1}
    return methods.build(name, model, **_options(name, extra))


def _attr(method: Any, x: Tensor, call: dict, **over: Any) -> Tensor:
    return method.attribute(x, **{**call, **over}).attributions


def _applies(name: str, kind: str) -> bool:
    # CAMs weigh the channels of a spatial layer: the MLP has none
    return not (kind == "mlp" and name in CAMS)


def _close(actual: Tensor, expected: Tensor, dtype=torch.float32, what: str = "") -> None:
    tolerance = FLOAT64 if dtype == torch.float64 else FLOAT32
    torch.testing.assert_close(actual, expected, **tolerance, msg=lambda m: f"{what}: {m}")


@pytest.fixture(autouse=True)
def probe_on():
    chunks.set_probe(True)
    chunks.clear_probe_cache()
    yield
    chunks.set_probe(None)
    chunks.clear_probe_cache()


def _budget(monkeypatch, x: Tensor, rows: int) -> None:
    """Automatic chunks of ``rows`` input rows of ``x`` (at least ``_AUTO_MIN_ROWS``)."""
    row_bytes = math.prod(x.shape[1:]) * x.element_size()
    monkeypatch.setitem(chunks._AUTO_BYTES, "cpu", rows * row_bytes)


# -- 1 and 2: first call == later calls == fixed chunks ----------------------------------------
@pytest.mark.parametrize("auto_rows", [8, 24, 96])
@pytest.mark.parametrize("kind", ["cnn", "mlp"])
@pytest.mark.parametrize("name", METHODS)
def test_first_call_equals_later_calls_and_fixed_chunks(name, kind, auto_rows, monkeypatch):
    if not _applies(name, kind):
        pytest.skip("a CAM needs a spatial layer")
    model, x, extra = _case(kind)
    _budget(monkeypatch, x, auto_rows)
    method, call = _method(name, model, extra)
    first = _attr(method, x, call)
    for i in range(1, CALLS):
        later = _attr(method, x, call)
        _close(later, first, what=f"{name} call {i + 1} vs the first")
    for chunk_size in (1, 1000):
        fixed = _attr(method, x, call, chunk_size=chunk_size)
        _close(fixed, first, what=f"{name} chunk_size={chunk_size} vs auto")


#: methods that must have been split in some configuration above (so the comparison there
#: can fail): one evaluation per call that fits in an automatic chunk
MUST_SPLIT = {
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "deeplift",
    "feature_ablation",
    "occlusion",
    "lime",
}


@pytest.mark.parametrize("name", sorted(MUST_SPLIT))
def test_the_comparisons_above_can_see_splits(name, monkeypatch):
    """Self-contained (test order and xdist workers do not matter): in some configuration of
    the comparison above, a later call of ``name`` ran other forwards than its first."""
    for kind in ("cnn", "mlp"):
        for auto_rows in (8, 24, 96):
            chunks.clear_probe_cache()
            model, x, extra = _case(kind)
            _budget(monkeypatch, x, auto_rows)
            method, call = _method(name, model, extra)
            _attr(method, x, call)
            first_sizes = sorted(model.sizes)
            for _ in range(1, CALLS):
                model.sizes.clear()
                _attr(method, x, call)
                if sorted(model.sizes) != first_sizes:
                    return
    pytest.fail(f"{name} was never split: the comparison above could not catch a change")


# -- 3: a model returning one value per batch is never split --------------------------------
class Reduced(nn.Module):
    """The CNN's class-1 logit reduced over the batch: a scalar, or the batch mean
    expanded back to one row per example (``expand``)."""

    def __init__(self, expand: bool) -> None:
        super().__init__()
        self.inner = _cnn().net
        self.expand = expand
        self.sizes: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.sizes.append(x.shape[0])
        out = self.inner(x)
        if self.expand:
            return out.mean(0, keepdim=True).expand_as(out)
        return out[:, 1].mean()


SCALAR_METHODS = {
    "saliency": {},
    "input_x_gradient": {},
    "integrated_gradients": {"n_steps": 4, "return_delta": False},
    "feature_ablation": {"feature_mask": _grid(4)},
    "occlusion": {"sliding_window_shapes": (3, 4, 4), "strides": (3, 4, 4)},
}


@pytest.mark.parametrize("name", sorted(SCALAR_METHODS))
def test_a_scalar_output_model_is_never_split(name, monkeypatch):
    model = Reduced(expand=False).eval()
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    _budget(monkeypatch, x, 24)
    method, call = methods.build(name, model, **SCALAR_METHODS[name])
    first = _attr(method, x, call)
    sizes = list(model.sizes)
    for _ in range(CALLS - 1):
        model.sizes.clear()
        _close(_attr(method, x, call), first, what=name)
        assert model.sizes == sizes  # the very forwards of the first call


#: input rows per automatic chunk for the batch-mean model: every evaluation of the call
#: fits in one chunk, and a split into 2-4 equal chunks is near enough to be timed
EXPANDED_ROWS = {"saliency": 8, "input_x_gradient": 8, "integrated_gradients": 16}
_SPLITS_ROWS = (
    "the probe takes a model whose selected output has one row per input row as per-row "
    "(forward.evaluate: outputs.shape[0] == n_rows); a batch mean expanded to every row "
    "passes that check, so a call that fits in one automatic chunk is split after the first"
)


def _expanded_calls(name: str, monkeypatch) -> tuple[Tensor, list[Tensor], list[int], list]:
    model = Reduced(expand=True).eval()
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    _budget(monkeypatch, x, EXPANDED_ROWS.get(name, 96))
    method, call = methods.build(name, model, target=1, **SCALAR_METHODS[name])
    first = _attr(method, x, call)
    sizes = list(model.sizes)
    later, later_sizes = [], []
    for _ in range(CALLS - 1):
        model.sizes.clear()
        later.append(_attr(method, x, call))
        later_sizes.append(list(model.sizes))
    return first, later, sizes, later_sizes


@pytest.mark.xfail(strict=True, reason=_SPLITS_ROWS)
@pytest.mark.parametrize("name", sorted(SCALAR_METHODS))
def test_a_batch_mean_expanded_model_is_never_split(name, monkeypatch):
    _, _, sizes, later_sizes = _expanded_calls(name, monkeypatch)
    for got in later_sizes:
        assert got == sizes  # the very forwards of the first call


# a gradient summed over the rows of a chunk's batch mean is the same for any split (the
# mean is linear): only the perturbation methods, which read each row's output, change
_EXPANDED_CHANGES = {"feature_ablation", "occlusion"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=_SPLITS_ROWS))
        if name in _EXPANDED_CHANGES
        else name
        for name in sorted(SCALAR_METHODS)
    ],
)
def test_a_batch_mean_expanded_model_keeps_its_first_results(name, monkeypatch):
    first, later, _, _ = _expanded_calls(name, monkeypatch)
    for i, result in enumerate(later):
        _close(result, first, what=f"{name} call {i + 2}")


# -- 4: a model mixing rows on purpose, at the default budget ----------------------------------
class MeanCentred(nn.Module):
    """Logits minus their batch mean: each row's output depends on the rows beside it."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _cnn().net
        self.sizes: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.sizes.append(x.shape[0])
        out = self.inner(x)
        return out - out.mean(0, keepdim=True)


MIXING_METHODS = {
    # 4 examples x 64 cells = 256 perturbed rows: one default automatic chunk (341 rows)
    "feature_ablation": {"feature_mask": _grid(8), "target": 1},
    # 4 examples x 49 windows = 196 rows
    "occlusion": {"sliding_window_shapes": (3, 4, 4), "strides": (3, 2, 2), "target": 1},
}


@pytest.mark.xfail(
    strict=True,
    reason="the probe splits a call that fits in one automatic chunk once the model gave "
    "one output per row; a model mixing rows (batch statistics) then gets other results "
    "than on its first call (before this session such a call was always one forward)",
)
@pytest.mark.parametrize("name", sorted(MIXING_METHODS))
def test_a_model_mixing_rows_keeps_its_first_results(name):
    model = MeanCentred().eval()
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    method, call = methods.build(name, model, **MIXING_METHODS[name])
    first = _attr(method, x, call)
    sizes = list(model.sizes)
    for i in range(CALLS - 1):
        model.sizes.clear()
        result = _attr(method, x, call)
        # safe: the first call's one forward again, or a split that changes nothing
        _close(result, first, what=f"{name} call {i + 2} (forwards {model.sizes} vs {sizes})")


# -- 5: two threads, one method object ---------------------------------------------------------
THREAD_CALLS = 20


@pytest.mark.parametrize("name", METHODS)
def test_two_threads_get_the_single_thread_results(name, monkeypatch):
    model, x, extra = _case("cnn")
    _budget(monkeypatch, x, 8)
    method, call = _method(name, model, extra)
    expected = _attr(method, x, call)  # one forward per evaluation: nothing probed yet
    chunks.clear_probe_cache()
    results: list[list[Tensor]] = [[], []]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def work(slot: int) -> None:
        try:
            barrier.wait()
            for _ in range(THREAD_CALLS):
                results[slot].append(_attr(method, x, call))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for slot, got in enumerate(results):
        assert len(got) == THREAD_CALLS
        for i, result in enumerate(got):
            _close(result, expected, what=f"{name} thread {slot} call {i + 1}")


# -- 6: float64 and an empty batch ---------------------------------------------------------------
@pytest.mark.parametrize("name", METHODS)
def test_float64_first_call_equals_later_calls(name, monkeypatch):
    model, x, extra = _case("cnn", torch.float64)
    _budget(monkeypatch, x, 8)
    method, call = _method(name, model, extra)
    first = _attr(method, x, call)
    assert first.dtype == torch.float64
    for i in range(1, CALLS):
        _close(_attr(method, x, call), first, torch.float64, f"{name} call {i + 1}")
    _close(_attr(method, x, call, chunk_size=1), first, torch.float64, f"{name} chunk 1")


@pytest.mark.parametrize("name", METHODS)
def test_an_empty_batch_before_and_after_the_probe(name, monkeypatch):
    model, x, extra = _case("cnn")
    _budget(monkeypatch, x, 8)
    method, call = _method(name, model, extra)
    empty, empty_call = x[:0], dict(call)
    if "baselines" in call and call["baselines"].shape[0] == x.shape[0]:
        empty_call["baselines"] = call["baselines"][:0]
    full = _attr(method, x, call)
    chunks.clear_probe_cache()
    try:
        cold = _attr(method, empty, empty_call)
    except Exception as error:  # an empty batch that the method refuses: refused the same way
        for _ in range(CALLS):
            _attr(method, x, call)
        with pytest.raises(type(error)):
            _attr(method, empty, empty_call)
        pytest.skip(f"{name} refuses an empty batch: {type(error).__name__}")
    assert cold.shape == (0,) + full.shape[1:]
    for _ in range(CALLS):  # warm the probe on full batches (splits timed)
        _attr(method, x, call)
    warm = _attr(method, empty, empty_call)
    assert warm.shape == cold.shape and warm.dtype == cold.dtype


# -- the attention methods, on a tiny BERT ------------------------------------------------------
@pytest.fixture(scope="module")
def bert():
    pytest.importorskip("transformers")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "attention"))
    try:
        import _models
    finally:
        sys.path.pop(0)
    return _models.tiny_classifier()


@pytest.mark.parametrize("name", ATTENTION)
def test_attention_methods_first_call_equals_later_calls(name, bert, monkeypatch):
    monkeypatch.setitem(chunks._AUTO_BYTES, "cpu", 8 * 8 * 8)  # 8 rows of 8 token ids
    ids = torch.randint(5, 24, (4, 8), generator=torch.Generator().manual_seed(2))
    ids[:, 0], ids[:, -1] = 1, 2
    method, call = methods.build(name, bert)
    if name == "gradient_weighted_rollout":
        call["target"] = 1
    first = _attr(method, ids, call)
    for i in range(1, CALLS):
        _close(_attr(method, ids, call), first, what=f"{name} call {i + 1}")
    for chunk_size in (1, 1000):
        _close(_attr(method, ids, call, chunk_size=chunk_size), first, what=f"{name} {chunk_size}")
