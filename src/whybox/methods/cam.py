"""The CAM family beyond Captum: what pytorch-grad-cam users rely on, on the shared engine.

Every method here is one class with only its own channel-weighting maths; one base
(:class:`_Cam`) does the rest:

1. the layer's activations ``A`` (and, for gradient methods, ``dy/dA``) come from ONE
   chunked forward (and backward) through the engine (``row_gradients`` with the layer as
   the tap, or the evaluator with the layer captured);
2. a ``reshape_transform`` turns token layouts into maps, e.g. a ViT's ``(N, 1 + H*W, D)``
   into ``(N, D, H, W)`` (see :func:`vit_reshape_transform`);
3. the method computes weights ``w`` (per channel, or per element);
4. ``cam = relu(sum_c w_c * A_c)``, per pytorch-grad-cam: the ReLU keeps the evidence *for*
   the target (Selvaraju et al.), unlike Captum's ``LayerGradCam`` whose ReLU is optional;
5. the map is upsampled to the input's spatial size (bilinear by default) and optionally
   min-max normalised per image.

Targets are everything :mod:`whybox.core.targets` accepts, including a callable
``f(output) -> (N,)`` and, as in pytorch-grad-cam, a list of one callable per image such as
``[ClassifierOutputTarget(281), ClassifierOutputTarget(7)]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from whybox.core.call import Call, prepare_call
from whybox.core.forward import ChunkSize, RowBatch, evaluate
from whybox.core.gradients import row_gradients
from whybox.core.hooks import override
from whybox.core.registry import register
from whybox.core.result import Explanation
from whybox.core.scope import LayerSite
from whybox.core.validation import check_bool, check_choice, check_int, fail

from .base import Method

__all__ = [
    "UpsampledGradCam",
    "GradCamPlusPlus",
    "XGradCam",
    "HiResCam",
    "LayerCam",
    "ScoreCam",
    "AblationCam",
    "EigenCam",
    "vit_reshape_transform",
    "ClassifierOutputTarget",
    "ClassifierOutputSoftmaxTarget",
]

ReshapeTransform = Callable[[Tensor], Tensor]

#: ``interpolate_mode`` choices; "bilinear" means (multi)linear for 1-D and 3-D maps.
_MODES = ("bilinear", "nearest", "nearest-exact", "bicubic", "area")
_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


# -- targets and transforms (pytorch-grad-cam conveniences) ------------------------------
class ClassifierOutputTarget:
    """Target: the score of class ``category`` (pytorch-grad-cam's helper of the same name).

    Works on one example's output row ``(K,)`` (as an item of a per-example target list) and
    on a batch ``(N, K)`` (as a single target callable).
    """

    def __init__(self, category: int) -> None:
        self.category = check_int("ClassifierOutputTarget", "category", category)

    def __call__(self, output: Tensor) -> Tensor:
        return output[self.category] if output.dim() == 1 else output[:, self.category]

    def __repr__(self) -> str:
        return f"ClassifierOutputTarget({self.category})"


class ClassifierOutputSoftmaxTarget(ClassifierOutputTarget):
    """Target: the softmax probability of class ``category`` (over the last dimension)."""

    def __call__(self, output: Tensor) -> Tensor:
        return super().__call__(torch.softmax(output, dim=-1))

    def __repr__(self) -> str:
        return f"ClassifierOutputSoftmaxTarget({self.category})"


def vit_reshape_transform(
    height: int, width: int, *, has_cls_token: bool = True
) -> ReshapeTransform:
    """A ``reshape_transform`` turning ViT tokens into a channel-first spatial map.

    Parameters
    ----------
    height, width : int
        The patch grid (e.g. 14 x 14 for a 224-pixel ViT-B/16).
    has_cls_token : bool
        Whether the first token is a class token (dropped: it has no position).

    Returns
    -------
    callable
        ``f(tokens (N, [1 +] height * width, D)) -> (N, D, height, width)``.
    """
    owner = "vit_reshape_transform"
    check_int(owner, "height", height, minimum=1)
    check_int(owner, "width", width, minimum=1)
    check_bool(owner, "has_cls_token", has_cls_token)
    skip = int(has_cls_token)

    def transform(tokens: Tensor) -> Tensor:
        expected = height * width + skip
        if not isinstance(tokens, Tensor) or tokens.dim() != 3 or tokens.shape[1] != expected:
            fail(
                owner,
                "height",
                f"such that the layer has {expected} tokens, i.e. a layer output of shape "
                f"(N, {expected}, D) for a {height} x {width} grid"
                + (" plus a class token" if skip else ""),
                tokens,
            )
        grid = tokens[:, skip:, :].reshape(tokens.shape[0], height, width, tokens.shape[2])
        return grid.permute(0, 3, 1, 2)

    return transform


# -- shared pieces ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layer:
    """What one forward (and backward) told us about the layer.

    Attributes
    ----------
    activations : ``(N, C, *spatial)`` after the reshape transform
    gradients : same shape, ``d target / d activations`` (``None`` for gradient-free methods)
    outputs : ``(N,)`` target scores of the unperturbed inputs (``None`` without a target)
    native_shape : the layer output's own shape, before the reshape transform
    """

    activations: Tensor
    gradients: Tensor | None
    outputs: Tensor | None
    native_shape: tuple[int, ...]


def _spatial_sum(values: Tensor) -> Tensor:
    return values.sum(dim=tuple(range(2, values.dim())), keepdim=True)


def _min_max(values: Tensor, eps: float) -> Tensor:
    """Per-row min-max scaling to [0, 1] over all but the first dimension."""
    flat = values.reshape(values.shape[0], -1)
    low = flat.min(dim=1).values.view((-1,) + (1,) * (values.dim() - 1))
    high = flat.max(dim=1).values.view((-1,) + (1,) * (values.dim() - 1))
    return (values - low) / (high - low + eps)


def _resize(maps: Tensor, size: tuple[int, ...], mode: str) -> Tensor:
    """``(rows, 1, *spatial)`` maps resized to ``size``."""
    if mode == "bilinear":
        mode = _LINEAR[len(size)]
    if mode in ("linear", "bilinear", "bicubic", "trilinear"):
        return F.interpolate(maps, size=size, mode=mode, align_corners=False)
    return F.interpolate(maps, size=size, mode=mode)


def _input_size(call: Call, spatial_dims: int, owner: str, name: str) -> tuple[int, ...]:
    """Spatial size of the first input, checked against the map's number of spatial dims."""
    x = call.tensors[0]
    if x.dim() != spatial_dims + 2:
        fail(
            owner,
            name,
            f"used with an input of shape (N, C, *spatial) with {spatial_dims} spatial dims "
            f"like the layer's map (set upsample=False for other inputs)",
            x,
        )
    return tuple(x.shape[2:])


def _captured_forward(call: Call, site: LayerSite) -> tuple[Tensor, Tensor]:
    """The layer's output and the target scores, from one chunked no-grad forward."""
    values: list[Tensor] = []
    outputs: list[Tensor] = []
    device = call.tensors[0].device

    def build(start: int, stop: int) -> RowBatch:
        index = torch.arange(start, stop, device=device)
        return RowBatch(tuple(t[start:stop] for t in call.tensors), index)

    with site.capture() as captured:

        def consume(start: int, stop: int, selected: Tensor, grads: Any) -> None:
            site._check_seen(captured, call.owner)
            values.append(_single(captured.tensors, call.owner).detach())
            outputs.append(selected.reshape(-1))

        evaluate(
            call.evaluator,
            n_items=call.batch_size,
            build=build,
            consume=consume,
            chunk_rows=call.chunk_rows,
            progress=call.progress,
        )
    return torch.cat(values), torch.cat(outputs)


def _checked(site: LayerSite, owner: str) -> Callable[[], Any]:
    """``site.capture`` as a tap that fails clearly when the layer did not run."""

    @contextmanager
    def tap() -> Iterator[Any]:
        with site.capture() as captured:
            yield captured
        site._check_seen(captured, owner)

    return tap


def _single(tensors: list[Tensor] | tuple[Tensor, ...], owner: str) -> Tensor:
    if len(tensors) != 1:
        fail(owner, "layer", "a module returning one tensor", f"{len(tensors)} tensors", raw=True)
    return tensors[0]


def _rows(call: Call, examples: Tensor, first: Tensor | None = None) -> RowBatch:
    """The inputs of ``examples`` (the first one replaced by ``first`` when given)."""
    rest = call.tensors if first is None else call.tensors[1:]
    picked = tuple(t.index_select(0, examples) for t in rest)
    return RowBatch(picked if first is None else (first,) + picked, examples)


# -- the base -----------------------------------------------------------------------------
class _Cam(Method):
    """Shared CAM pipeline; subclasses define :meth:`_weights` (or :meth:`_map`).

    Parameters
    ----------
    model : nn.Module
        The model (any callable whose forward runs ``layer``).
    layer : nn.Module
        The layer whose output is explained, usually the last convolutional block (for a
        ViT: the tokens entering the last block, with ``reshape_transform``).
    reshape_transform : callable, optional
        ``f(layer_output) -> (N, C, *spatial)``; e.g. :func:`vit_reshape_transform`.
    """

    needs_module = True
    #: whether the weights need ``d target / d A`` (one backward per chunk)
    uses_gradients: ClassVar[bool] = True
    #: whether the inputs are perturbed (so must be floating point)
    perturbs_inputs: ClassVar[bool] = False
    #: whether the weights need the target scores of the unperturbed inputs
    _needs_scores: ClassVar[bool] = True

    def __init__(
        self, model: Any, layer: Any, *, reshape_transform: ReshapeTransform | None = None
    ) -> None:
        super().__init__(model, layer=layer)
        self.reshape_transform = reshape_transform

    def attribute(
        self,
        inputs: Any,
        *,
        target: Any = None,
        forward_args: Any = None,
        chunk_size: ChunkSize = "auto",
        upsample: bool = True,
        interpolate_mode: str = "bilinear",
        normalize: bool = False,
        show_progress: bool = False,
    ) -> Explanation:
        """Class activation maps, one per example.

        Parameters
        ----------
        inputs : Tensor or tuple / dict of tensors
            The first input is the image, ``(N, C_in, *spatial)``.
        target : int, list, tensor, callable or list of callables, optional
            What is explained (see :mod:`whybox.core.targets`).
        forward_args : optional
            Extra arguments for the model, expanded along the batch.
        chunk_size : int or "auto"
            Rows per forward (perturbed rows for Score-CAM / Ablation-CAM); results do not
            depend on it.
        upsample : bool
            Resize the map to the first input's spatial size (else keep the layer's).
        interpolate_mode : str
            ``"bilinear"`` (linear / trilinear for 1-D / 3-D maps), ``"nearest"``,
            ``"nearest-exact"``, ``"bicubic"`` or ``"area"``.
        normalize : bool
            Min-max scale each map to [0, 1] (after upsampling), as pytorch-grad-cam shows.
        show_progress : bool
            Progress bar over the forwards.

        Returns
        -------
        Explanation
            ``attributions`` of shape ``(N, 1, *input_spatial)`` (``(N, 1, *layer_spatial)``
            without ``upsample``); ``extras["outputs"]`` holds the target scores ``(N,)``
            where a target was selected.
        """
        owner = type(self).__name__
        check_bool(owner, "upsample", upsample)
        check_bool(owner, "normalize", normalize)
        check_choice(owner, "interpolate_mode", interpolate_mode, _MODES)
        if self.reshape_transform is not None and not callable(self.reshape_transform):
            fail(owner, "reshape_transform", "None or a callable", self.reshape_transform)
        site = LayerSite.of(self.layer, owner=owner)
        if len(site.layers) != 1:
            fail(owner, "layer", "one nn.Module of the model", self.layer)
        call = prepare_call(
            owner,
            self.model,
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
            require_float=self.perturbs_inputs,
        )
        layer = self._layer_values(call, site)
        cam = F.relu(self._map(call, site, layer, interpolate_mode)).unsqueeze(1)
        if upsample:
            size = _input_size(call, cam.dim() - 2, owner, "upsample")
            cam = _resize(cam, size, interpolate_mode)
        if normalize:
            cam = _min_max(cam, 1e-7)
        x = call.tensors[0]
        return Explanation(
            attributions=cam.to(x.dtype) if x.is_floating_point() else cam,
            inputs=call.inputs.restore(call.inputs.tensors),
            target=call.target.raw,
            method=self.name,
            parameters={
                "layer": str(self.layer),
                "upsample": upsample,
                "interpolate_mode": interpolate_mode,
                "normalize": normalize,
            },
            extras={"outputs": layer.outputs},
        )

    # -- steps ---------------------------------------------------------------------------
    def _layer_values(self, call: Call, site: LayerSite) -> _Layer:
        """Activations (and gradients) of the layer from one chunked pass."""
        owner = call.owner
        gradients = outputs = None
        if self.uses_gradients:
            record: list[Tensor] = []
            grads, outputs = row_gradients(call, tap=_checked(site, owner), record=record)
            native = _single(record, owner)
            gradients = self._reshape(_single(grads, owner), call)
        elif call.target.kind == "none" and not self._needs_scores:
            # no target to select (a target-free method on a multi-output model)
            values, _ = site.activations(call)
            native = _single(values, owner)
        else:
            native, outputs = _captured_forward(call, site)
        return _Layer(self._reshape(native, call), gradients, outputs, tuple(native.shape))

    def _reshape(self, values: Tensor, call: Call) -> Tensor:
        owner = call.owner
        if self.reshape_transform is not None:
            values = self.reshape_transform(values)
            if not isinstance(values, Tensor) or values.dim() < 3:
                fail(
                    owner,
                    "reshape_transform",
                    "a callable returning a tensor of shape (N, C, *spatial)",
                    values,
                )
        elif values.dim() < 3:
            fail(
                owner,
                "layer",
                "a layer with output (N, C, *spatial) (pass reshape_transform for token "
                "layouts such as (N, tokens, D))",
                values,
            )
        if values.shape[0] != call.batch_size:
            fail(owner, "reshape_transform", "a callable keeping the batch dimension", values)
        return values

    def _map(self, call: Call, site: LayerSite, layer: _Layer, mode: str) -> Tensor:
        """``sum_c w_c * A_c``: ``(N, *spatial)`` before the ReLU."""
        weights = self._weights(call, site, layer, mode)
        return (weights * layer.activations).sum(dim=1)

    def _weights(self, call: Call, site: LayerSite, layer: _Layer, mode: str) -> Tensor:
        """Weights broadcastable to the activations ``(N, C, *spatial)``."""
        raise NotImplementedError


# -- gradient methods ---------------------------------------------------------------------
@register("upsampled_grad_cam")
class UpsampledGradCam(_Cam):
    """Grad-CAM (Selvaraju et al., 2017) in the CAM family's conventions.

    Weights are the spatially averaged gradients, ``w_c = mean(dy/dA_c)``. Unlike
    :class:`~whybox.methods.GradCam` (Captum's ``LayerGradCam``: layer resolution, ReLU
    optional) the map is ReLU'd, upsampled and the layer may be a token layout.
    """

    def _weights(self, call, site, layer, mode):
        return layer.gradients.mean(dim=tuple(range(2, layer.gradients.dim())), keepdim=True)


@register("grad_cam_plus_plus")
class GradCamPlusPlus(_Cam):
    """Grad-CAM++ (Chattopadhay et al., 2018), the closed form of their eq. 19.

    With ``g = dy/dA`` (assuming an exponential output, so higher derivatives are powers of
    ``g``): ``alpha = g^2 / (2 g^2 + sum_ij(A) g^3)``, zero where ``g = 0``, and
    ``w_c = sum_ij alpha * relu(g)``; as pytorch-grad-cam computes it (``eps = 1e-6``).
    """

    eps: ClassVar[float] = 1e-6

    def _weights(self, call, site, layer, mode):
        g = layer.gradients
        g2 = g * g
        alpha = g2 / (2 * g2 + _spatial_sum(layer.activations) * g2 * g + self.eps)
        alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
        return _spatial_sum(F.relu(g) * alpha)


@register("xgrad_cam")
class XGradCam(_Cam):
    """XGrad-CAM (Fu et al., 2020): ``w_c = sum_ij(g * A_c) / (sum_ij(A_c) + eps)``.

    For ReLU layers followed by average pooling and a linear head this equals Grad-CAM.
    """

    eps: ClassVar[float] = 1e-7

    def _weights(self, call, site, layer, mode):
        a = layer.activations
        return _spatial_sum(layer.gradients * a) / (_spatial_sum(a) + self.eps)


@register("hires_cam")
class HiResCam(_Cam):
    """HiResCAM (Draelos & Carin, 2020): ``cam = relu(sum_c g_c * A_c)`` elementwise.

    No spatial averaging of the gradients, so the map is faithful to the model's own
    computation for models ending in global average pooling and a linear layer.
    """

    def _weights(self, call, site, layer, mode):
        return layer.gradients


@register("layer_cam")
class LayerCam(_Cam):
    """LayerCAM (Jiang et al., 2021): ``cam = relu(sum_c relu(g_c) * A_c)`` elementwise."""

    def _weights(self, call, site, layer, mode):
        return F.relu(layer.gradients)


# -- perturbation methods (batched through the one evaluator) -----------------------------
@register("score_cam")
class ScoreCam(_Cam):
    """Score-CAM (Wang et al., 2020): channels weighted by the score of the masked input.

    Each activation channel is upsampled to the input size (``interpolate_mode``) and
    min-max scaled to a mask ``M_c`` in [0, 1] (``eps = 1e-8``); ``w = softmax_c(y(x * M_c))``.
    The paper's increase of confidence ``y(x * M_c) - y(baseline)`` gives the same weights
    (softmax ignores a per-image shift), and, like pytorch-grad-cam, the raw target score is
    used. The masked inputs (``N * C`` rows, built lazily) go through the model in chunks of
    ``chunk_size`` rows. (pytorch-grad-cam upsamples masks with ``align_corners=True``; here
    masks use the same interpolation as the output map.)
    """

    uses_gradients = False
    perturbs_inputs = True
    _needs_scores = False

    def _weights(self, call, site, layer, mode):
        a = layer.activations
        n, c = a.shape[:2]
        size = _input_size(call, a.dim() - 2, call.owner, "layer")
        x = call.tensors[0]
        scores = torch.empty(n * c, dtype=a.dtype, device=a.device)
        device = x.device

        def build(start: int, stop: int) -> RowBatch:
            items = torch.arange(start, stop, device=device)
            examples, channels = items // c, items % c
            maps = a[examples.to(a.device), channels.to(a.device)].unsqueeze(1)
            masks = _min_max(_resize(maps, size, mode), 1e-8).to(device=device, dtype=x.dtype)
            return _rows(call, examples, x.index_select(0, examples) * masks)

        def consume(start: int, stop: int, selected: Tensor, grads: Any) -> None:
            scores[start:stop] = selected.reshape(-1).to(scores.device, scores.dtype)

        evaluate(
            call.evaluator,
            n_items=n * c,
            build=build,
            consume=consume,
            chunk_rows=call.chunk_rows,
            progress=call.progress,
            description=f"{call.owner} (masked inputs)",
        )
        weights = torch.softmax(scores.view(n, c), dim=1)
        return weights.view((n, c) + (1,) * (a.dim() - 2))


@register("ablation_cam")
class AblationCam(_Cam):
    """Ablation-CAM (Desai & Ramaswamy, 2020): ``w_c = (y - y_c) / y``.

    ``y_c`` is the target score with channel ``c`` of the layer set to zero (the paper's
    ablation; pytorch-grad-cam uses a very negative value when the layer's minimum is not
    zero). The ``N * C`` ablations run batched, ``chunk_size`` rows per forward, each row
    ablating its own channel through a hook on the layer. With a ``reshape_transform`` the
    channel is ablated at the layer elements the transform maps to it (the transform must
    rearrange elements, as :func:`vit_reshape_transform` does). As in the paper, ``y`` near
    zero makes the weights large; the sign of ``y`` flips them.
    """

    uses_gradients = False

    def _weights(self, call, site, layer, mode):
        a = layer.activations
        n, c = a.shape[:2]
        positions = self._channel_positions(layer, call.owner).to(a.device)
        ablated = torch.empty(n * c, dtype=layer.outputs.dtype, device=layer.outputs.device)
        device = call.tensors[0].device
        current: dict[str, Tensor] = {}

        def ablate(output: Any) -> Any:
            if isinstance(output, (tuple, list)):  # a layer returning a 1-tuple
                return type(output)([ablate(output[0])] + list(output[1:]))
            # a copy, so no tensor the model keeps is written in place
            values = output.clone(memory_format=torch.contiguous_format)
            chosen = positions.index_select(0, current["channels"].to(positions.device))
            values.view(values.shape[0], -1).scatter_(1, chosen.to(values.device), 0.0)
            return values

        def build(start: int, stop: int) -> RowBatch:
            items = torch.arange(start, stop, device=device)
            examples = items // c
            current["channels"] = items % c
            return _rows(call, examples)

        def consume(start: int, stop: int, selected: Tensor, grads: Any) -> None:
            ablated[start:stop] = selected.reshape(-1).to(ablated.device, ablated.dtype)

        with override(site.layers[0], ablate):
            evaluate(
                call.evaluator,
                n_items=n * c,
                build=build,
                consume=consume,
                chunk_rows=call.chunk_rows,
                progress=call.progress,
                description=f"{call.owner} (channel ablations)",
            )
        y = layer.outputs.view(n, 1)
        weights = (y - ablated.view(n, c)) / y
        return weights.to(a.dtype).view((n, c) + (1,) * (a.dim() - 2))

    def _channel_positions(self, layer: _Layer, owner: str) -> Tensor:
        """``(C, K)`` flat positions (within one example's layer output) of each channel.

        Found by passing element indices through the reshape transform, so any transform
        that only rearranges elements (indexing, reshape, permute) works.
        """
        shape = (1,) + layer.native_shape[1:]
        index = torch.arange(math.prod(shape), dtype=torch.float64).reshape(shape)
        mapped = index if self.reshape_transform is None else self.reshape_transform(index)
        c = layer.activations.shape[1]
        if (
            not isinstance(mapped, Tensor)
            or mapped.shape[1:] != layer.activations.shape[1:]
            or not torch.equal(mapped, mapped.round())
            or bool((mapped < 0).any())
            or bool((mapped >= index.numel()).any())
        ):
            fail(
                owner,
                "reshape_transform",
                "a transform that only rearranges the layer's elements (indexing, reshape, "
                "permute) for Ablation-CAM",
                "a transform that computes new values",
                raw=True,
            )
        return mapped.reshape(c, -1).long()


# -- gradient-free, target-free -----------------------------------------------------------
@register("eigen_cam")
class EigenCam(_Cam):
    """Eigen-CAM (Muhammad & Yeasin, 2020): the first principal component of the activations.

    Per image, the activations as ``(spatial, C)`` rows are centred over positions and
    projected on their first right singular vector; the map does not depend on the target
    (a target, if given, is only checked and its scores reported). The SVD's sign is
    arbitrary (pytorch-grad-cam leaves it so); here it is fixed so that the projection's
    third moment is positive: the few locations that stand out come out positive, the broad
    rest negative (and is cut by the ReLU).
    """

    uses_gradients = False
    _needs_scores = False

    def _map(self, call, site, layer, mode):
        a = layer.activations
        n, c = a.shape[:2]
        rows = a.reshape(n, c, -1).transpose(1, 2)
        centred = rows - rows.mean(dim=1, keepdim=True)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        projection = centred @ vh[:, 0, :].unsqueeze(-1)
        skew = projection.pow(3).sum(dim=(1, 2), keepdim=True)
        projection = projection * torch.where(skew < 0, -1.0, 1.0).to(projection.dtype)
        return projection.reshape((n,) + tuple(a.shape[2:]))
