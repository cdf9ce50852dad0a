"""Overhead cuts in the randomisation, robustness and deletion metrics keep every number.

Each fast path is compared, with ``torch.equal``, against a reference written here the way
the metric computed it before (plain ``copy.deepcopy``, one ranking call per table, one
noise draw per sample concatenated and tiled inputs, ``torch.where`` rows), or against the
library's own slow path forced by the arguments (a full baseline tensor instead of one
value).
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn

import whybox
import whybox.metrics as WM
from _support import assert_same_state, model_state
from whybox.core.randomness import make_random
from whybox.metrics._common import (
    average_ranks,
    given_maps,
    pearson,
    per_example,
    resolve_explain,
    spearman,
)
from whybox.metrics.randomisation import _deep_copy, _reinitialise, _restore


# -- models ----------------------------------------------------------------------------------
class TwoInput(nn.Module):
    """Two inputs and a keyword forward argument (a per-example scale)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 5)
        self.b = nn.Linear(4, 5)
        self.head = nn.Linear(5, 3)

    def forward(self, x, z, scale=None):
        h = torch.tanh(self.a(x) + self.b(z))
        if scale is not None:
            h = h * scale.reshape(-1, 1)
        return self.head(h)


def cnn(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 16 * 16, 5),
        )
        .eval()
        .to(dtype)
    )


def two_input() -> nn.Module:
    torch.manual_seed(3)
    return TwoInput().eval()


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, dtype and shape, ``NaN`` where the other has ``NaN``."""
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and torch.equal(a.isnan(), b.isnan())
        and (torch.equal(a.nan_to_num(), b.nan_to_num()))
    )


# -- model_parameter_randomisation -----------------------------------------------------------
def reference_randomisation(
    model, inputs, *, explain, options, attributions, target, forward_args, mode, absolute, seed
):
    """The metric as written before: ``copy.deepcopy``, the original maps ranked apart."""
    fn = resolve_explain(explain, options, owner="test", model=model)
    rows = (inputs if isinstance(inputs, torch.Tensor) else inputs[0]).shape[0]
    if attributions is not None:
        reference = given_maps("test", attributions, rows=rows)
    else:
        reference = fn(model, inputs, target, forward_args)

    def table(maps):
        t = per_example(maps)
        return t.abs() if absolute else t

    base_ranks = average_ranks(table(reference))
    randomised = copy.deepcopy(model)
    similarities = []
    for step, name in enumerate(WM.randomisable_layers(model)):
        layer = randomised.get_submodule(name)
        _reinitialise(layer, seed + step)
        maps = fn(randomised, inputs, target, forward_args)
        similarities.append(pearson(base_ranks, average_ranks(table(maps))))
        if mode == "independent":
            _restore(layer, model.get_submodule(name))
    return torch.stack(similarities)


@pytest.mark.parametrize("mode", ["cascading", "independent"])
@pytest.mark.parametrize("absolute", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [1, 3])
def test_randomisation_matches_reference(mode, absolute, dtype, batch) -> None:
    model = cnn(dtype)
    x = torch.rand(batch, 2, 16, 16, dtype=dtype)
    target = torch.arange(batch) % 5
    state = model_state(model)
    rng = torch.get_rng_state()
    kwargs = dict(target=target, forward_args=None, mode=mode, absolute=absolute, seed=4)
    for explain, options in [("saliency", {"abs": False}), ("input_x_gradient", None)]:
        got = WM.model_parameter_randomisation(
            model, x, explain=explain, explain_options=options, **kwargs
        ).similarity
        want = reference_randomisation(
            model, x, explain=explain, options=options, attributions=None, **kwargs
        )
        assert _same(got, want), (explain, got, want)
    # the caller's model and the global generator are left as they were, with no hooks
    assert_same_state(model, state)
    assert torch.equal(torch.get_rng_state(), rng)
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())


@pytest.mark.parametrize("given_dtype", [torch.float32, torch.float64])
def test_randomisation_given_maps_and_tuple_inputs_match_reference(given_dtype) -> None:
    # tuple inputs and a forward argument; given maps of the model's dtype or another one
    # (float64 maps beside float32 steps: ranked apart, as before)
    model = two_input()
    x, z = torch.randn(4, 6), torch.randn(4, 4)
    scale = torch.rand(4) + 0.5
    target = [0, 1, 2, 1]
    given = whybox.explain(
        model, (x, z), method="saliency", target=target, forward_args={"scale": scale}
    ).attributions
    given = tuple(g.to(given_dtype) for g in given)
    kwargs = dict(target=target, forward_args={"scale": scale}, mode="cascading", seed=1)
    for absolute in (True, False):
        got = WM.model_parameter_randomisation(
            model, (x, z), attributions=given, absolute=absolute, **kwargs
        ).similarity
        want = reference_randomisation(
            model,
            (x, z),
            explain="saliency",
            options=None,
            attributions=given,
            absolute=absolute,
            **kwargs,
        )
        assert _same(got, want)


# -- the model copy --------------------------------------------------------------------------
class Tied(nn.Module):
    """A shared submodule, tied weights, a buffer, a hook and odd attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 4)
        self.out = nn.Linear(4, 4)
        self.out.weight = self.embed.weight  # tied
        self.again = self.embed  # the same module twice
        self.register_buffer("offset", torch.arange(4.0))
        self.shared_empty: dict = {}
        self.embed.note = self.shared_empty  # one empty dict held by two modules
        self.names = ["a", "b"]
        self.config = {"depth": 2}

    def forward(self, x):
        return self.out(self.again(x) + self.offset)


def test_deep_copy_is_deepcopy() -> None:
    torch.manual_seed(0)
    model = Tied()
    calls = []
    model.out.register_forward_hook(lambda module, args, out: calls.append(1))
    got, want = _deep_copy(model), copy.deepcopy(model)
    x = torch.randn(3, 4)
    assert torch.equal(got(x), want(x)) and torch.equal(got(x), model(x))
    assert len(calls) == 4  # the hook was copied (as deepcopy copies it)
    assert list(got.state_dict()) == list(want.state_dict())
    for (name, a), b in zip(got.state_dict().items(), want.state_dict().values()):
        assert torch.equal(a, b) and a.dtype == b.dtype, name
    # the structure deepcopy keeps: tied weights, the shared module, the shared empty dict
    assert got.out.weight is got.embed.weight and got.again is got.embed
    assert got.embed.note is got.shared_empty and got.shared_empty == {}
    assert got.names == ["a", "b"] and got.config == {"depth": 2}
    # nothing is shared with the original: tensors, containers, hook dicts
    originals = {id(p) for p in model.parameters()} | {id(b) for b in model.buffers()}
    assert not originals & ({id(p) for p in got.parameters()} | {id(b) for b in got.buffers()})
    for mine, theirs in zip(got.modules(), model.modules()):
        assert mine is not theirs and type(mine) is type(theirs)
        for key, value in vars(theirs).items():
            if isinstance(value, (dict, OrderedDict, set, list)):
                copied = vars(mine)[key]
                assert copied is not value and type(copied) is type(value), key
                if key not in ("_parameters", "_buffers", "_modules"):
                    assert copied == value, key
    # a hook added to the copy stays on the copy
    got.embed.register_forward_hook(lambda module, args, out: None)
    assert not model.embed._forward_hooks


# -- random_logit ----------------------------------------------------------------------------
def reference_random_logit(model, inputs, *, target, n_classes, attributions, absolute, seed):
    """Both maps ranked in separate calls (the former ``spearman``), same draws."""
    batch = (inputs if isinstance(inputs, torch.Tensor) else inputs[0]).shape[0]
    classes = torch.as_tensor(target, dtype=torch.long).reshape(-1).expand(batch)
    offsets = torch.randint(1, n_classes, (batch,), generator=make_random(seed).generator)
    others = (classes + offsets) % n_classes
    if attributions is not None:
        first = given_maps("test", attributions, rows=batch)
        second = whybox.explain(model, inputs, method="saliency", target=others.tolist())
        second = (second.attributions.detach(),)
    else:  # both in one call of 2 N rows, as the metric does for a row-wise method
        doubled = tuple(torch.cat([t, t]) for t in (inputs,))[0]
        both = whybox.explain(
            model, doubled, method="saliency", target=classes.tolist() + others.tolist()
        ).attributions
        first, second = (both[:batch],), (both[batch:],)

    def table(maps):
        t = per_example(maps)
        return t.abs() if absolute else t

    return spearman(table(first), table(second)), others


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("absolute", [True, False])
def test_random_logit_matches_reference(dtype, batch, absolute) -> None:
    model = cnn(dtype)
    x = torch.rand(batch, 2, 16, 16, dtype=dtype)
    target = (torch.arange(batch) * 2) % 5
    given = whybox.explain(model, x, method="saliency", target=target).attributions
    for attributions in (None, given, given.to(torch.float64 if dtype == torch.float32 else dtype)):
        got = WM.random_logit(
            model,
            x,
            target=target,
            n_classes=5,
            attributions=attributions,
            absolute=absolute,
            seed=7,
        )
        want, others = reference_random_logit(
            model,
            x,
            target=target,
            n_classes=5,
            attributions=attributions,
            absolute=absolute,
            seed=7,
        )
        assert torch.equal(got.random_targets, others)
        assert _same(got.similarity, want)


# -- robustness ------------------------------------------------------------------------------
def reference_robustness(
    name,
    model,
    inputs,
    *,
    target,
    forward_args,
    attributions,
    options,
    radius,
    n_samples,
    norm,
    per_chunk,
    seed,
):
    """The former loop: one noise tensor per sample and input, concatenated; tiled inputs
    and maps."""
    tensors = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    rebuild = (lambda t: t[0]) if isinstance(inputs, torch.Tensor) else tuple
    batch = tensors[0].shape[0]
    generator = make_random(seed).generator

    def tile(t, k):
        return t.repeat(k, *([1] * (t.dim() - 1)))

    def explain(rows, k):
        index = torch.arange(batch).repeat(k)
        kwargs = dict(options or {})
        if forward_args is not None:
            kwargs["forward_args"] = {key: v[index] for key, v in forward_args.items()}
        out = whybox.explain(
            model,
            rebuild(rows),
            method="saliency",
            target=torch.as_tensor(target)[index],
            **kwargs,
        ).attributions
        return (out,) if isinstance(out, torch.Tensor) else tuple(out)

    original = attributions if attributions is not None else explain(tensors, 1)
    flat_original = torch.cat([e.reshape(batch, -1) for e in original], dim=1)
    scale = None
    if name != "local_lipschitz":
        scale = torch.norm(flat_original, p=norm, dim=1)
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    columns = []
    for start in range(0, n_samples, per_chunk):
        k = min(per_chunk, n_samples - start)
        draws = [
            [
                torch.empty(x.shape, dtype=x.dtype).uniform_(-radius, radius, generator=generator)
                for x in tensors
            ]
            for _ in range(k)
        ]
        noise = [torch.cat([d[i] for d in draws]) for i in range(len(tensors))]
        rows = tuple(tile(x, k) + e for x, e in zip(tensors, noise))
        explained = explain(rows, k)
        flat = torch.cat([e.reshape(k * batch, -1) for e in explained], dim=1)
        change = torch.norm(flat - tile(flat_original, k), p=norm, dim=1)
        if scale is None:
            step = torch.cat(
                [(r - tile(x, k)).reshape(k * batch, -1) for r, x in zip(rows, tensors)], dim=1
            )
            distance = torch.linalg.vector_norm(step, ord=2, dim=1)
            ratio = change / torch.where(distance == 0, torch.ones_like(distance), distance)
        else:
            ratio = change / tile(scale, k)
        columns.append(ratio.reshape(k, batch).T)
    return torch.cat(columns, dim=1)


METRICS = {
    "max_sensitivity": WM.max_sensitivity,
    "avg_sensitivity": WM.avg_sensitivity,
    "local_lipschitz": WM.local_lipschitz,
}


@pytest.mark.parametrize("name", sorted(METRICS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch,chunk_size", [(1, None), (3, 7), (5, 10)])
def test_robustness_matches_reference(name, dtype, batch, chunk_size) -> None:
    # chunk_size 7 with 3 rows: 2 samples per chunk (and a last chunk of 1 of 5 samples)
    model = cnn(dtype)
    x = torch.rand(batch, 2, 16, 16, dtype=dtype)
    target = torch.arange(batch) % 5
    per_chunk = 5 if chunk_size is None else max(1, chunk_size // batch)
    state, rng = model_state(model), torch.get_rng_state()
    for given in (None, whybox.explain(model, x, method="saliency", target=target).attributions):
        result = METRICS[name](
            model,
            x,
            target=target,
            attributions=given,
            radius=0.05,
            n_samples=5,
            chunk_size=chunk_size,
            seed=11,
        )
        want = reference_robustness(
            name,
            model,
            x,
            target=target,
            forward_args=None,
            attributions=None if given is None else (given,),
            options=None,
            radius=0.05,
            n_samples=5,
            norm="fro" if name != "local_lipschitz" else 2,
            per_chunk=per_chunk,
            seed=11,
        )
        assert _same(result.samples, want), (result.samples, want)
    assert_same_state(model, state)
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_robustness_channels_last_inputs_match_reference(name) -> None:
    # rows built by broadcasting stay contiguous, as tiled copies were (a channels-last
    # batch must not make channels-last rows: convolutions may round differently)
    model = cnn()
    x = torch.rand(3, 2, 16, 16).contiguous(memory_format=torch.channels_last)
    target = torch.tensor([0, 3, 4])
    seen = []

    def explain(model_, inputs, **kwargs):
        seen.append(inputs.is_contiguous())
        return whybox.explain(model_, inputs, method="saliency", **kwargs)

    result = METRICS[name](
        model, x, explain=explain, target=target, radius=0.05, n_samples=4, seed=5
    )
    want = reference_robustness(
        name,
        model,
        x,
        target=target,
        forward_args=None,
        attributions=None,
        options=None,
        radius=0.05,
        n_samples=4,
        norm="fro" if name != "local_lipschitz" else 2,
        per_chunk=4,
        seed=5,
    )
    assert seen[1:] == [True]  # the perturbed rows (the first call explains x itself)
    assert _same(result.samples, want)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_robustness_tuple_inputs_and_forward_args_match_reference(name) -> None:
    # two inputs draw in turn within each sample: the order the reference concatenates
    model = two_input()
    x, z = torch.randn(3, 6), torch.randn(3, 4)
    scale = torch.rand(3) + 0.5
    target = torch.tensor([0, 2, 1])
    result = METRICS[name](
        model,
        (x, z),
        target=target,
        forward_args={"scale": scale},
        radius=0.1,
        n_samples=4,
        chunk_size=6,
        seed=2,
    )
    want = reference_robustness(
        name,
        model,
        (x, z),
        target=target,
        forward_args={"scale": scale},
        attributions=None,
        options=None,
        radius=0.1,
        n_samples=4,
        norm="fro" if name != "local_lipschitz" else 2,
        per_chunk=2,
        seed=2,
    )
    assert _same(result.samples, want)


# -- deletion / insertion / aopc ---------------------------------------------------------------
@pytest.mark.parametrize("metric", [WM.deletion, WM.insertion, WM.aopc])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("order", ["morf", "lerf", "random"])
@pytest.mark.parametrize("chunk_size", ["auto", 5, None])
def test_scalar_baseline_rows_match_full_baseline_rows(metric, dtype, order, chunk_size) -> None:
    # one baseline value takes the masked_fill rows; the same baseline as a full tensor
    # takes torch.where's: the curves must be equal
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3)).to(dtype)
    x = torch.randn(7, 12, dtype=dtype)
    attributions = torch.randn(7, 12, dtype=dtype)
    attributions[:, :3] = 0.0  # ties
    target = torch.arange(7) % 3
    kwargs = dict(target=target, n_steps=5, order=order, seed=3, chunk_size=chunk_size)
    for value in (0.0, -0.5):
        fast = metric(model, x, attributions, baselines=value, **kwargs)
        full = torch.full_like(x, value)
        slow = metric(model, x, attributions, baselines=full, **kwargs)
        assert torch.equal(fast.curve, slow.curve) and torch.equal(fast.score, slow.score)
    default = metric(model, x, attributions, **kwargs)
    slow = metric(model, x, attributions, baselines=torch.zeros_like(x), **kwargs)
    assert torch.equal(default.curve, slow.curve)


def test_scalar_baseline_rows_with_feature_mask_and_tuple_inputs() -> None:
    model = two_input()
    x, z = torch.randn(5, 6), torch.randn(5, 4)
    ax, az = torch.randn(5, 6), torch.randn(5, 4)
    mask = (torch.tensor([[0, 0, 1, 1, 2, 2]]), torch.tensor([[3, 3, 4, 4]]))
    scale = torch.rand(5) + 0.5
    for metric in (WM.deletion, WM.insertion):
        kwargs = dict(target=1, forward_args={"scale": scale}, feature_mask=mask, n_steps=5)
        fast = metric(model, (x, z), (ax, az), **kwargs)
        slow = metric(
            model, (x, z), (ax, az), baselines=(torch.zeros_like(x), torch.zeros_like(z)), **kwargs
        )
        assert torch.equal(fast.curve, slow.curve)
        # the curve's ends: the inputs untouched / all at the baseline (other batch sizes)
        with torch.no_grad():
            clean = model(x, z, scale=scale)[:, 1]
            empty = model(torch.zeros_like(x), torch.zeros_like(z), scale=scale)[:, 1]
        first, last = (clean, empty) if metric is WM.deletion else (empty, clean)
        assert torch.allclose(fast.curve[:, 0], first) and torch.allclose(fast.curve[:, -1], last)


def test_scalar_baseline_rows_of_channels_last_images() -> None:
    # rows filled from a channels-last batch are the rows torch.where builds (values and
    # layout: the curves, through convolutions, are equal)
    model = cnn()
    x = torch.rand(3, 2, 16, 16).contiguous(memory_format=torch.channels_last)
    attributions = torch.randn(3, 2, 16, 16)
    pixels = torch.arange(256).view(1, 1, 16, 16)
    for metric in (WM.deletion, WM.insertion):
        for mask in (None, pixels):
            kwargs = dict(target=[0, 1, 2], feature_mask=mask, n_steps=4, chunk_size=4)
            fast = metric(model, x, attributions, **kwargs)
            slow = metric(model, x, attributions, baselines=torch.zeros(3, 2, 16, 16), **kwargs)
            assert torch.equal(fast.curve, slow.curve)
