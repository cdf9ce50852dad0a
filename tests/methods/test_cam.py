"""The CAM family: closed forms, slow textbook references in float64, batching, targets,
hook / state hygiene, declared options and the contracts (empty batches, float64, in-place
ops after the layer, chunking). The ViT / reshape-transform tests are in test_cam_vit.py."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _support import assert_same_state, eigen_cam_reference, model_state, module_hook_count
from whybox.core.registry import get_method
from whybox.core.validation import ParameterError, ParameterTypeError
from whybox.methods import GradCam
from whybox.methods.cam import (
    AblationCam,
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
    EigenCam,
    GradCamPlusPlus,
    HiResCam,
    LayerCam,
    ScoreCam,
    UpsampledGradCam,
    XGradCam,
    vit_reshape_transform,
)

ALL = [
    UpsampledGradCam,
    GradCamPlusPlus,
    XGradCam,
    HiResCam,
    LayerCam,
    ScoreCam,
    AblationCam,
    EigenCam,
]


# -- models ---------------------------------------------------------------------------------
class GapNet(nn.Module):
    """conv -> ReLU -> global average pool -> linear: CAMs have closed forms in fc.weight."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, stride=2)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(5, 4)

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).mean(dim=(2, 3)))


class DeepNet(nn.Module):
    """A CNN whose layer gradients vary over space (for the textbook comparisons)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 5, 3, stride=2)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(5, 4, 1)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        h = self.relu2(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(torch.tanh(self.conv3(h)).flatten(1))


@pytest.fixture
def gap():
    torch.manual_seed(0)
    return GapNet().double().eval(), torch.randn(2, 3, 12, 12, dtype=torch.float64)


@pytest.fixture
def deep():
    torch.manual_seed(1)
    model = DeepNet().double().eval()
    # bias conv2 up so that ReLU activations are mostly positive (non-trivial weights)
    with torch.no_grad():
        model.conv2.bias += 0.3
    return model, torch.randn(3, 3, 10, 10, dtype=torch.float64)


def layer_values(model, layer, x, target):
    """Activations and d target / d activations by hand (independent of whybox)."""
    seen = {}
    handle = layer.register_forward_hook(lambda m, i, o: seen.setdefault("a", o))
    try:
        out = model(x)
    finally:
        handle.remove()
    y = out[torch.arange(len(x)), torch.as_tensor(target)]
    (grad,) = torch.autograd.grad(y.sum(), seen["a"])
    return seen["a"].detach(), grad, y.detach()


def cam_of(weights, activations):
    return F.relu((weights * activations).sum(dim=1, keepdim=True))


def run(cls, model, layer, x, target, **options):
    return cls(model, layer).attribute(x, target=target, upsample=False, **options).attributions


# -- closed forms on conv -> ReLU -> GAP -> linear -----------------------------------------
def test_gradient_cams_closed_forms_on_gap_linear(gap):
    model, x = gap
    target = [1, 3]
    a = model.relu(model.conv(x)).detach()
    hw = a.shape[2] * a.shape[3]
    w = model.fc.weight.detach()[target].view(2, 5, 1, 1)  # dy/dA_c = W[k, c] / HW everywhere
    grad_cam = cam_of(w / hw, a)
    torch.testing.assert_close(run(UpsampledGradCam, model, model.relu, x, target), grad_cam)
    # no spatial averaging needed when gradients are constant over space
    torch.testing.assert_close(run(HiResCam, model, model.relu, x, target), grad_cam)
    sums = a.sum(dim=(2, 3), keepdim=True)
    xgrad = cam_of(w / hw * sums / (sums + 1e-7), a)
    torch.testing.assert_close(run(XGradCam, model, model.relu, x, target), xgrad)
    torch.testing.assert_close(xgrad, grad_cam, atol=1e-6, rtol=1e-5)  # ReLU acts: same map
    torch.testing.assert_close(
        run(LayerCam, model, model.relu, x, target), cam_of(w.clamp_min(0) / hw, a)
    )
    # the Captum-convention GradCam with its ReLU gives the same map
    captum_style = GradCam(model, model.relu).attribute(x, target=target, relu_attributions=True)
    torch.testing.assert_close(captum_style.attributions, grad_cam)


def test_upsampling_and_normalisation(gap):
    model, x = gap
    method = HiResCam(model, model.relu)
    small = method.attribute(x, target=0, upsample=False).attributions
    big = method.attribute(x, target=0).attributions
    assert big.shape == (2, 1, 12, 12)
    torch.testing.assert_close(
        big, F.interpolate(small, size=(12, 12), mode="bilinear", align_corners=False)
    )
    nearest = method.attribute(x, target=0, interpolate_mode="nearest").attributions
    torch.testing.assert_close(nearest, F.interpolate(small, size=(12, 12), mode="nearest"))
    scaled = method.attribute(x, target=0, normalize=True).attributions
    flat = scaled.flatten(1)
    torch.testing.assert_close(flat.min(dim=1).values, torch.zeros(2, dtype=x.dtype))
    torch.testing.assert_close(
        flat.max(dim=1).values, torch.ones(2, dtype=x.dtype), atol=1e-5, rtol=0
    )
    assert (big >= 0).all()


# -- slow textbook references in float64 ------------------------------------------------------
def test_grad_cam_plus_plus_matches_textbook(deep):
    model, x = deep
    target = [0, 2, 1]
    a, g, _ = layer_values(model, model.relu2, x, target)
    n, c, h, w = a.shape
    weights = torch.zeros(n, c, 1, 1, dtype=x.dtype)
    for i in range(n):
        for k in range(c):
            total = float(a[i, k].sum())
            for p in range(h):
                for q in range(w):
                    gij = float(g[i, k, p, q])
                    if gij == 0:
                        continue
                    alpha = gij**2 / (2 * gij**2 + total * gij**3 + 1e-6)
                    weights[i, k] += alpha * max(gij, 0.0)
    assert (g != 0).float().mean() > 0.5  # the reference exercised real gradients
    torch.testing.assert_close(
        run(GradCamPlusPlus, model, model.relu2, x, target), cam_of(weights, a)
    )


def test_score_cam_matches_per_channel_loop_and_chunking(deep):
    model, x = deep
    target = [2, 0, 1]
    a, _, _ = layer_values(model, model.conv2, x, target)
    n, c = a.shape[:2]
    weights = torch.zeros(n, c, 1, 1, dtype=x.dtype)
    for i in range(n):
        scores = []
        for k in range(c):
            mask = F.interpolate(a[i : i + 1, k : k + 1], size=(10, 10), mode="bilinear")
            mask = (mask - mask.min()) / (mask.max() - mask.min() + 1e-8)
            with torch.no_grad():
                scores.append(model(x[i : i + 1] * mask)[0, target[i]])
        weights[i, :, 0, 0] = torch.softmax(torch.stack(scores), dim=0)
    expected = cam_of(weights, a)
    for chunk in (1, 4, "auto"):
        got = run(ScoreCam, model, model.conv2, x, target, chunk_size=chunk)
        torch.testing.assert_close(got, expected)


def test_ablation_cam_matches_per_channel_loop(deep):
    model, x = deep
    target = [1, 1, 0]
    a, _, y = layer_values(model, model.relu2, x, target)
    n, c = a.shape[:2]
    ablated = torch.zeros(n, c, dtype=x.dtype)
    for k in range(c):

        def zero(module, inputs, output, k=k):
            output = output.clone()
            output[:, k] = 0
            return output

        handle = model.relu2.register_forward_hook(zero)
        try:
            with torch.no_grad():
                ablated[:, k] = model(x)[torch.arange(n), target]
        finally:
            handle.remove()
    weights = ((y[:, None] - ablated) / y[:, None]).view(n, c, 1, 1)
    expected = cam_of(weights, a)
    for chunk in (1, 5, "auto"):
        torch.testing.assert_close(
            run(AblationCam, model, model.relu2, x, target, chunk_size=chunk), expected
        )


def test_eigen_cam_matches_svd_projection(deep):
    model, x = deep
    a, _, _ = layer_values(model, model.conv2, x, [0, 0, 0])
    expected = eigen_cam_reference(a)
    torch.testing.assert_close(run(EigenCam, model, model.conv2, x, None), expected)
    # the map does not depend on the target; a target is checked and its scores reported
    result = EigenCam(model, model.conv2).attribute(x, target=1, upsample=False)
    torch.testing.assert_close(result.attributions, expected)
    torch.testing.assert_close(result.extras["outputs"], model(x)[:, 1].detach())


# -- batching and targets -----------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_batch_invariance(cls, deep):
    model, x = deep
    target = [2, 0, 1]
    whole = cls(model, model.conv2).attribute(x, target=target, chunk_size=2).attributions
    assert whole.shape == (3, 1, 10, 10) and whole.dtype == x.dtype and (whole >= 0).all()
    for i in range(3):
        single = cls(model, model.conv2).attribute(x[i : i + 1], target=target[i]).attributions
        torch.testing.assert_close(single[0], whole[i])


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_callable_targets(cls, deep):
    model, x = deep
    method = cls(model, model.conv2)
    by_index = method.attribute(x, target=[2, 0, 1]).attributions
    per_example = [ClassifierOutputTarget(k) for k in (2, 0, 1)]
    torch.testing.assert_close(method.attribute(x, target=per_example).attributions, by_index)
    shared = method.attribute(x, target=ClassifierOutputTarget(1)).attributions
    torch.testing.assert_close(shared, method.attribute(x, target=1).attributions)
    lam = method.attribute(x, target=lambda out: out.softmax(-1)[:, 0]).attributions
    soft = [ClassifierOutputSoftmaxTarget(0)] * 3
    torch.testing.assert_close(method.attribute(x, target=soft).attributions, lam)


def test_per_example_callable_list_must_return_scalars(deep):
    model, x = deep
    with pytest.raises(ParameterError, match="'target' parameter of HiResCam"):
        HiResCam(model, model.conv2).attribute(x, target=[lambda row: row] * 3)
    with pytest.raises(ParameterError, match="'target' parameter of HiResCam"):
        HiResCam(model, model.conv2).attribute(x, target=[ClassifierOutputTarget(0)] * 2)
    assert module_hook_count(model) == 0


# -- hygiene ---------------------------------------------------------------------------------------
class Boom(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = 0
        self.after = 0

    def forward(self, x):
        self.calls += 1
        if self.calls > self.after:
            raise RuntimeError("boom")
        return self.inner(x)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
@pytest.mark.parametrize("after", [0, 1])
def test_hooks_removed_and_model_unchanged_after_exception(cls, after, deep):
    model, x = deep
    wrapped = Boom(model).train()
    state = model_state(wrapped)
    wrapped.after = after  # fail in the first forward, or in the perturbed ones
    with pytest.raises(RuntimeError, match="boom"):
        cls(wrapped, model.conv2).attribute(x, target=0, chunk_size=1)
    assert module_hook_count(wrapped) == 0
    assert_same_state(wrapped, state)
    original = x.clone()
    cls(model, model.conv2).attribute(x, target=0)
    assert torch.equal(x, original) and not x.requires_grad
    assert module_hook_count(model) == 0


def test_clear_errors(deep):
    model, x = deep
    with pytest.raises(ParameterError, match="'target' parameter of ScoreCam"):
        ScoreCam(model, model.conv2).attribute(x, target=7)
    with pytest.raises(ParameterError, match="'layer' parameter of HiResCam"):
        HiResCam(model, nn.Conv2d(1, 1, 1)).attribute(x, target=0)
    with pytest.raises(ParameterError, match="'layer' parameter of LayerCam .* reshape_transform"):
        LayerCam(model, model.fc).attribute(x, target=0)
    with pytest.raises(ParameterError, match="'interpolate_mode' parameter"):
        LayerCam(model, model.conv2).attribute(x, target=0, interpolate_mode="cubic")
    with pytest.raises(ParameterError, match="'reshape_transform' parameter of AblationCam"):
        AblationCam(model, model.conv2, reshape_transform=lambda t: t * 2).attribute(x, target=0)
    with pytest.raises(ParameterError, match="'upsample' parameter"):
        flat = nn.Sequential(nn.Unflatten(1, (3, 10, 10)), model)
        HiResCam(flat, model.conv2).attribute(x.flatten(1), target=0)
    with pytest.raises(ParameterError, match="'height' parameter of vit_reshape_transform"):
        vit_reshape_transform(3, 3)(torch.zeros(2, 17, 8))
    assert module_hook_count(model) == 0


def test_registered_names():
    names = {
        "upsampled_grad_cam": UpsampledGradCam,
        "grad_cam_plus_plus": GradCamPlusPlus,
        "xgrad_cam": XGradCam,
        "hires_cam": HiResCam,
        "layer_cam": LayerCam,
        "score_cam": ScoreCam,
        "ablation_cam": AblationCam,
        "eigen_cam": EigenCam,
    }
    for name, cls in names.items():
        assert get_method(name) is cls and cls.name == name


def test_per_example_callables_in_the_engine(deep):
    """The core target form added for CAM users also works for other methods and wrappers."""
    from whybox.core.targets import prepare_target
    from whybox.methods import NoiseTunnel, Saliency

    model, x = deep
    target = prepare_target([ClassifierOutputTarget(k) for k in (2, 0, 1)], 3, owner="t")
    out = torch.randn(4, 3, dtype=torch.float64)
    rows = torch.tensor([2, 2, 0, 1])  # rows of examples 2, 2, 0, 1
    torch.testing.assert_close(target.select(out, rows), out[torch.arange(4), [1, 1, 2, 0]])
    tunnel = NoiseTunnel(Saliency(model))
    options = {"nt_samples": 3, "nt_samples_batch_size": 2, "stdevs": 0.1, "seed": 0}
    by_index = tunnel.attribute(x, target=[2, 0, 1], **options).attributions
    by_callable = tunnel.attribute(
        x, target=[ClassifierOutputTarget(k) for k in (2, 0, 1)], **options
    ).attributions
    torch.testing.assert_close(by_callable, by_index)


# -- the template: declared options checked before any forward -----------------------------
class Counting(nn.Module):
    """Records the number of rows of every forward."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.rows: list[int] = []

    def forward(self, x):
        self.rows.append(x.shape[0])
        return self.inner(x)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_declared_options_checked_before_the_model_runs(cls, deep):
    model, x = deep
    counting = Counting(model)
    conv2 = model.conv2
    bad_calls = [
        (dict(layer=conv2, reshape_transform=3), {}, ParameterTypeError, "reshape_transform"),
        (dict(layer=[conv2]), {}, ParameterError, "layer"),
        (dict(layer=None), {}, ParameterError, "layer"),
        (dict(layer=conv2), dict(upsample=1), ParameterTypeError, "upsample"),
        (dict(layer=conv2), dict(normalize="yes"), ParameterTypeError, "normalize"),
        (dict(layer=conv2), dict(interpolate_mode="cubic"), ParameterError, "interpolate_mode"),
        (dict(layer=conv2), dict(show_progress=None), ParameterTypeError, "show_progress"),
    ]
    for init, call, error, name in bad_calls:
        method = cls(counting, init.pop("layer"), **init)
        with pytest.raises(error, match=f"'{name}' parameter of {cls.__name__}"):
            method.attribute(x, target=0, **call)
    assert counting.rows == []  # every check ran before the model did
    assert module_hook_count(model) == 0


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_a_plain_function_model_works(cls, deep):
    # CAMs only hook the layer's forward: no module rules, so no nn.Module is required
    model, x = deep
    expected = cls(model, model.conv2).attribute(x, target=[2, 0, 1]).attributions
    got = cls(lambda t: model(t), model.conv2).attribute(x, target=[2, 0, 1]).attributions
    torch.testing.assert_close(got, expected)
    assert not cls.needs_module and cls.needs_layer


# -- contracts: empty batches, dtypes, in-place ops, chunking ----------------------------------
@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_empty_batch_gives_empty_maps(cls, deep):
    model, x = deep
    counting = Counting(model)
    method = cls(counting, model.conv2)
    empty = x[:0]
    big = method.attribute(empty, target=0, normalize=True)
    assert big.attributions.shape == (0, 1, 10, 10) and big.attributions.dtype == x.dtype
    assert big.extras["outputs"].shape == (0,)
    small = method.attribute(empty, target=[], upsample=False).attributions
    assert small.shape == (0, 1, 4, 4) and small.dtype == x.dtype  # conv2's resolution
    assert method.attribute(empty).extras["outputs"] is None
    assert set(counting.rows) == {0}  # one empty forward each, for the layer's shape
    assert module_hook_count(model) == 0


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_float64_in_float64_out(cls, deep):
    model64, x64 = deep
    model32 = copy.deepcopy(model64).float()
    x32 = x64.float()
    target = [2, 0, 1]
    maps64 = cls(model64, model64.conv2).attribute(x64, target=target).attributions
    maps32 = cls(model32, model32.conv2).attribute(x32, target=target).attributions
    assert maps64.dtype == torch.float64 and maps32.dtype == torch.float32
    torch.testing.assert_close(maps64, maps32.double(), rtol=1e-3, atol=1e-4)
    # computed in float64, not in float32 and cast: the two differ at float32 rounding
    assert (maps64 - maps32.double()).abs().max() > 0


class Shift(nn.Module):
    """``x + 0.5``, optionally in place (``x += 0.5``)."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return x.add_(0.5) if self.inplace else x + 0.5


@pytest.mark.parametrize("op", ["relu", "shift"])
@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_inplace_op_after_the_layer(cls, op, deep):
    """An in-place op right after the explained conv (``ReLU(inplace=True)``, or ``+=``)
    must not change the maps: the layer's values are its output, not what the op later
    wrote over it. (For HiResCAM and LayerCAM an in-place ReLU happens to give the same
    maps either way; the shift tells them apart.)"""
    model, x = deep
    with torch.no_grad():
        assert (model.conv2(torch.relu(model.conv1(x))) < 0).float().mean() > 0.05
    after = {
        "relu": lambda inplace: nn.ReLU(inplace=inplace),
        "shift": lambda inplace: nn.Sequential(Shift(inplace), nn.ReLU()),
    }[op]
    eager, inplace = copy.deepcopy(model), copy.deepcopy(model)
    eager.relu2, inplace.relu2 = after(False), after(True)
    target = [2, 0, 1]
    expected = cls(eager, eager.conv2).attribute(x, target=target, upsample=False)
    got = cls(inplace, inplace.conv2).attribute(x, target=target, upsample=False)
    torch.testing.assert_close(got.attributions, expected.attributions)
    assert expected.attributions.gt(0).float().mean() > 0.1  # a non-trivial comparison
    assert module_hook_count(inplace) == 0


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_chunk_size_respected_and_irrelevant(cls, deep):
    model, x = deep
    counting = Counting(model)
    method = cls(counting, model.conv2)
    target = [2, 0, 1]
    reference = method.attribute(x, target=target, chunk_size=1).attributions
    for chunk in (2, 4, 7, "auto"):
        counting.rows.clear()
        got = method.attribute(x, target=target, chunk_size=chunk).attributions
        torch.testing.assert_close(got, reference)
        if chunk == "auto":
            continue
        # one pass over the 3 images, then (Score / Ablation) the 3 * 5 perturbed rows
        expected = [min(chunk, 3 - s) for s in range(0, 3, chunk)]
        if cls in (ScoreCam, AblationCam):
            expected += [min(chunk, 15 - s) for s in range(0, 15, chunk)]
        assert counting.rows == expected, (chunk, counting.rows)
