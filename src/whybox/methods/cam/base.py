"""The CAM pipeline every CAM shares; a CAM subclass writes only its channel weights.

1. the layer's activations ``A`` (and, for gradient methods, ``dy/dA``) come from ONE
   chunked forward (and backward) through the engine, the layer captured by
   :meth:`~whybox.core.scope.LayerSite.capture` (which records the layer's values even when
   the model changes them in place afterwards, and fails clearly when the layer did not run);
2. a ``reshape_transform`` turns token layouts into maps, e.g. a ViT's ``(N, 1 + H*W, D)``
   into ``(N, D, H, W)`` (see :func:`~whybox.methods.cam.vit_reshape_transform`);
3. the method computes weights ``w`` (per channel, or per element): :meth:`_Cam._weights`;
4. ``cam = relu(sum_c w_c * A_c)``, per pytorch-grad-cam: the ReLU keeps the evidence *for*
   the target (Selvaraju et al.), unlike Captum's ``LayerGradCam`` whose ReLU is optional;
5. the map is upsampled to the input's spatial size (bilinear by default) and optionally
   min-max normalised per image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from whybox.core.call import Call, prepare_call
from whybox.core.forward import ChunkSize, RowBatch, evaluate
from whybox.core.gradients import row_gradients
from whybox.core.method import Bool, Check, Choice, IsCallable
from whybox.core.result import Explanation
from whybox.core.scope import LayerSite
from whybox.core.validation import fail

from ..base import Method
from .reshape import ReshapeTransform

__all__ = ["LayerValues", "INTERPOLATE_MODES"]

#: ``interpolate_mode`` choices; "bilinear" means (multi)linear for 1-D and 3-D maps.
INTERPOLATE_MODES = ("bilinear", "nearest", "nearest-exact", "bicubic", "area")
_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


@dataclass(frozen=True)
class LayerValues:
    """What one forward (and backward) told us about the layer.

    Attributes
    ----------
    activations : Tensor
        ``(N, C, *spatial)``, after the reshape transform.
    gradients : Tensor or None
        Same shape, ``d target / d activations`` (``None`` for gradient-free methods).
    outputs : Tensor or None
        ``(N,)`` target scores of the unperturbed inputs (``None`` without a target).
    native_shape : tuple of int
        The layer output's own shape, before the reshape transform.
    """

    activations: Tensor
    gradients: Tensor | None
    outputs: Tensor | None
    native_shape: tuple[int, ...]


# -- small tensor helpers ---------------------------------------------------------------
def spatial_sum(values: Tensor) -> Tensor:
    """``(N, C, *spatial) -> (N, C, 1, ...)``: the sum over the spatial dimensions."""
    return values.sum(dim=tuple(range(2, values.dim())), keepdim=True)


def min_max(values: Tensor, eps: float) -> Tensor:
    """Per-row min-max scaling to [0, 1] over all but the first dimension (shape kept)."""
    flat = values.flatten(1)
    shape = (-1,) + (1,) * (values.dim() - 1)
    low = flat.min(dim=1).values.view(shape)
    high = flat.max(dim=1).values.view(shape)
    return (values - low) / (high - low + eps)


def resize(maps: Tensor, size: tuple[int, ...], mode: str) -> Tensor:
    """``(rows, 1, *spatial)`` maps resized to ``(rows, 1, *size)``."""
    if mode == "bilinear":
        mode = _LINEAR[len(size)]
    if mode in ("linear", "bilinear", "bicubic", "trilinear"):
        return F.interpolate(maps, size=size, mode=mode, align_corners=False)
    return F.interpolate(maps, size=size, mode=mode)


def input_size(call: Call, spatial_dims: int, owner: str, name: str) -> tuple[int, ...]:
    """Spatial size of the first input ``(N, C, *spatial)``, checked against the map's
    number of spatial dims (``name`` is the option blamed when they differ)."""
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


def example_rows(call: Call, examples: Tensor, first: Tensor | None = None) -> RowBatch:
    """The inputs of ``examples`` ``(rows,)``, the first input replaced by ``first``."""
    rest = call.tensors if first is None else call.tensors[1:]
    picked = tuple(t.index_select(0, examples) for t in rest)
    return RowBatch(picked if first is None else (first,) + picked, examples)


def _single(tensors: Any, owner: str) -> Tensor:
    if len(tensors) != 1:
        fail(owner, "layer", "a module returning one tensor", f"{len(tensors)} tensors", raw=True)
    return tensors[0]


def _one_layer(owner: str, name: str, value: Any) -> None:
    # None is reported by the template (needs_layer); a list is not one layer
    if value is not None and not isinstance(value, nn.Module):
        fail(owner, name, "one nn.Module of the model (a CAM explains a single layer)", value)


def _forward_with_layer(call: Call, site: LayerSite) -> tuple[Tensor, Tensor]:
    """The layer's output ``(N, ...)`` and the target scores ``(N,)`` from one chunked
    no-grad forward (no backward: gradient-free CAMs need no graph)."""
    values: list[Tensor] = []
    outputs: list[Tensor] = []
    device = call.tensors[0].device

    def build(start: int, stop: int) -> RowBatch:
        index = torch.arange(start, stop, device=device)
        return RowBatch(tuple(t[start:stop] for t in call.tensors), index)

    # copies of the layer's values: the forward runs as it is, one chunk's copy is the result
    with site.capture(copy=True) as captured:

        def consume(start: int, stop: int, selected: Tensor, grads: Any) -> None:
            captured.check_seen(call.owner)
            values.append(_single(captured.tensors, call.owner))
            outputs.append(selected.reshape(-1))
            # the next chunk must show its own values, not this one's
            captured.per_layer[:] = [() for _ in site.layers]

        evaluate(
            call.evaluator,
            n_items=call.batch_size,
            build=build,
            consume=consume,
            chunk_rows=call.chunk_rows,
            auto=call.chunk_auto,
            progress=call.progress,
        )
    return (values[0] if len(values) == 1 else torch.cat(values)), torch.cat(outputs)


# -- the base -------------------------------------------------------------------------------
class _Cam(Method):
    """Shared CAM pipeline; subclasses define :meth:`_weights` (or :meth:`_map`).

    Parameters
    ----------
    model : nn.Module or callable
        The model (any callable whose forward runs ``layer``).
    layer : nn.Module
        The layer whose output is explained, usually the last convolutional block (for a
        ViT: the tokens entering the last block, with ``reshape_transform``).
    reshape_transform : callable, optional
        ``f(layer_output) -> (N, C, *spatial)``; e.g. :func:`vit_reshape_transform`.
    """

    # forward hooks on the layer only, no module gradient rules: not refused as a "module
    # rules" method (the template still requires hooks to work on the layer)
    needs_module = False
    needs_layer = True
    parameters = {
        "layer": Check(_one_layer),
        "reshape_transform": IsCallable(),
        "upsample": Bool(),
        "normalize": Bool(),
        "interpolate_mode": Choice(INTERPOLATE_MODES),
    }
    #: whether the weights need ``d target / d A`` (one backward per chunk)
    uses_gradients: ClassVar[bool] = True
    #: whether the inputs are perturbed (so must be floating point)
    perturbs_inputs: ClassVar[bool] = False
    #: whether the weights need the target scores of the unperturbed inputs
    needs_scores: ClassVar[bool] = True

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
            without ``upsample``) in the first input's dtype; ``extras["outputs"]`` holds
            the target scores ``(N,)`` where a target was selected. ``N = 0`` gives empty
            maps of the same layout.
        """
        call = self._prepare(
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
        )
        site = self._scope().site  # a CAM's scope is always its one layer
        layer = self._layer_values(call, site)
        cam = F.relu(self._map(call, site, layer, interpolate_mode)).unsqueeze(1)
        return self._finish(
            call,
            cam,
            layer.outputs,
            upsample=upsample,
            mode=interpolate_mode,
            normalize=normalize,
        )

    def _empty_result(self, arguments: Mapping[str, Any]) -> Explanation:
        """``N = 0``: one empty forward gives the layer's (reshaped) map size, no maths.

        The target is not selected (there is no row to select from; as for every method's
        empty result); ``extras["outputs"]`` is an empty ``(0,)`` tensor when one was given.
        """
        call = self._prepare(
            arguments["inputs"],
            target=None,
            forward_args=arguments["forward_args"],
            chunk_size=arguments["chunk_size"],
            show_progress=arguments["show_progress"],
        )
        values = self._scope().activations(call)
        a = self._reshape(_single(values, self.owner), call)
        cam = a.new_zeros((0, 1) + tuple(a.shape[2:]))
        outputs = None if arguments["target"] is None else a.new_zeros((0,))
        explanation = self._finish(
            call,
            cam,
            outputs,
            upsample=arguments["upsample"],
            mode=arguments["interpolate_mode"],
            normalize=arguments["normalize"],
        )
        explanation.target = arguments["target"]
        return explanation

    # -- steps ---------------------------------------------------------------------------
    def _prepare(
        self,
        inputs: Any,
        *,
        target: Any,
        forward_args: Any,
        chunk_size: ChunkSize,
        show_progress: bool,
    ) -> Call:
        """The call's inputs, target and chunk policy (perturbing CAMs need float inputs)."""
        return prepare_call(
            self.owner,
            self.model,
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
            require_float=self.perturbs_inputs,
        )

    def _layer_values(
        self, call: Call, site: LayerSite, *, gradients: bool | None = None
    ) -> LayerValues:
        """Activations (and gradients, by default when the method uses them) of the layer
        from one chunked pass over the call's rows."""
        owner = call.owner
        grads = outputs = None
        if self.uses_gradients if gradients is None else gradients:
            record: list[Tensor] = []
            # the evaluator checks the captured layer ran and is on the output's graph
            taken, outputs = row_gradients(call, tap=site.capture, record=record)
            native = _single(record, owner)
            grads = self._reshape(_single(taken, owner), call)
        elif call.target.kind == "none" and not self.needs_scores:
            # no target to select (a target-free method on a multi-output model)
            values, _ = site.activations(call)
            native = _single(values, owner)
        else:
            native, outputs = _forward_with_layer(call, site)
        return LayerValues(self._reshape(native, call), grads, outputs, tuple(native.shape))

    def _reshape(self, values: Tensor, call: Call) -> Tensor:
        """The layer's tensor as ``(N, C, *spatial)`` (through ``reshape_transform``)."""
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

    def _map(self, call: Call, site: LayerSite, layer: LayerValues, mode: str) -> Tensor:
        """``sum_c w_c * A_c``: ``(N, *spatial)`` before the ReLU."""
        weights = self._weights(call, site, layer, mode)
        return (weights * layer.activations).sum(dim=1)

    def _weights(self, call: Call, site: LayerSite, layer: LayerValues, mode: str) -> Tensor:
        """Weights broadcastable to the activations ``(N, C, *spatial)``."""
        raise NotImplementedError

    def _finish(
        self,
        call: Call,
        cam: Tensor,
        outputs: Tensor | None,
        *,
        upsample: bool,
        mode: str,
        normalize: bool,
    ) -> Explanation:
        """``(N, 1, *layer_spatial)`` maps -> the result (upsampled / normalised)."""
        if upsample:
            cam = resize(cam, input_size(call, cam.dim() - 2, self.owner, "upsample"), mode)
        if normalize:
            cam = min_max(cam, 1e-7)
        x = call.tensors[0]
        return Explanation(
            attributions=cam.to(x.dtype) if x.is_floating_point() else cam,
            inputs=call.inputs.restore(call.inputs.tensors),
            target=call.target.raw,
            method=self.name,
            parameters={
                "layer": str(self.layer),
                "upsample": upsample,
                "interpolate_mode": mode,
                "normalize": normalize,
            },
            extras={"outputs": outputs},
        )
