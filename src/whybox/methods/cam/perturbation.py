"""Perturbation CAMs: channel weights from the target score of perturbed forwards.

Score-CAM masks the input with each channel; Ablation-CAM zeroes each channel at the layer.
Both have ``N * C`` perturbed rows, built lazily per chunk and run through the one
evaluator ``call.chunk_rows`` rows at a time (the call's one chunk policy), so memory is
bounded by the chunk and results do not depend on it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from whybox.core.call import Call
from whybox.core.forward import RowBatch, evaluate
from whybox.core.hooks import override
from whybox.core.registry import register
from whybox.core.scope import LayerSite
from whybox.core.validation import fail

from .base import LayerValues, _Cam, example_rows, input_size, min_max, resize

__all__ = ["ScoreCam", "AblationCam"]


def _scores_of_items(call: Call, n_items: int, build: Any, dtype: Any, description: str) -> Tensor:
    """Target scores ``(n_items,)`` of the rows ``build(start, stop)`` makes, chunked."""
    scores = torch.empty(n_items, dtype=dtype, device=call.tensors[0].device)

    def consume(start: int, stop: int, selected: Tensor, grads: Any) -> None:
        scores[start:stop] = selected.reshape(-1).to(scores.device, scores.dtype)

    evaluate(
        call.evaluator,
        n_items=n_items,
        build=build,
        consume=consume,
        chunk_rows=call.chunk_rows,
        auto=call.chunk_auto,
        progress=call.progress,
        description=f"{call.owner} ({description})",
    )
    return scores


@register("score_cam")
class ScoreCam(_Cam):
    """Score-CAM (Wang et al., 2020): channels weighted by the score of the masked input.

    Each activation channel is upsampled to the input size (``interpolate_mode``) and
    min-max scaled to a mask ``M_c`` in [0, 1] (``eps = 1e-8``); ``w = softmax_c(y(x * M_c))``
    ``(N, C, 1, ...)``. The paper's increase of confidence ``y(x * M_c) - y(baseline)``
    gives the same weights (softmax ignores a per-image shift), and, like pytorch-grad-cam,
    the raw target score is used. The masked inputs (``N * C`` rows, item ``i`` is channel
    ``i % C`` of example ``i // C``) go through the model in chunks of ``chunk_size`` rows.
    (pytorch-grad-cam upsamples masks with ``align_corners=True``; here masks use the same
    interpolation as the output map.)
    """

    uses_gradients = False
    perturbs_inputs = True
    needs_scores = False

    def _weights(self, call: Call, site: LayerSite, layer: LayerValues, mode: str) -> Tensor:
        a = layer.activations
        n, c = a.shape[:2]
        size = input_size(call, a.dim() - 2, call.owner, "layer")
        x = call.tensors[0]

        def build(start: int, stop: int) -> RowBatch:
            items = torch.arange(start, stop, device=a.device)
            maps = a[items // c, items % c].unsqueeze(1)  # (rows, 1, *layer_spatial)
            masks = min_max(resize(maps, size, mode), 1e-8).to(device=x.device, dtype=x.dtype)
            examples = (items // c).to(x.device)
            return example_rows(call, examples, x.index_select(0, examples) * masks)

        scores = _scores_of_items(call, n * c, build, a.dtype, "masked inputs")
        weights = torch.softmax(scores.view(n, c).to(a.device), dim=1)
        return weights.view((n, c) + (1,) * (a.dim() - 2))


@register("ablation_cam")
class AblationCam(_Cam):
    """Ablation-CAM (Desai & Ramaswamy, 2020): ``w_c = (y - y_c) / y`` ``(N, C, 1, ...)``.

    ``y_c`` is the target score with channel ``c`` of the layer set to zero (the paper's
    ablation; pytorch-grad-cam uses a very negative value when the layer's minimum is not
    zero). The ``N * C`` ablations run batched, ``chunk_size`` rows per forward, each row
    ablating its own channel through a hook on the layer. With a ``reshape_transform`` the
    channel is ablated at the layer elements the transform maps to it (the transform must
    rearrange elements, as :func:`vit_reshape_transform` does). As in the paper, ``y`` near
    zero makes the weights large; the sign of ``y`` flips them.
    """

    uses_gradients = False

    def _weights(self, call: Call, site: LayerSite, layer: LayerValues, mode: str) -> Tensor:
        a = layer.activations
        n, c = a.shape[:2]
        # (C, K), moved to the layer's device once (not per forward)
        positions = self._channel_positions(layer, call.owner).to(a.device)
        device = call.tensors[0].device
        current: dict[str, Tensor] = {}

        def ablate(output: Any) -> Any:
            if isinstance(output, (tuple, list)):  # a layer returning a 1-tuple
                return type(output)([ablate(output[0])] + list(output[1:]))
            # a copy, so no tensor the model keeps is written in place
            values = output.clone(memory_format=torch.contiguous_format)
            chosen = positions.index_select(0, current["channels"])
            values.view(values.shape[0], -1).scatter_(1, chosen.to(values.device), 0.0)
            return values

        def build(start: int, stop: int) -> RowBatch:
            items = torch.arange(start, stop, device=device)
            current["channels"] = (items % c).to(a.device)
            return example_rows(call, items // c)

        with override(site.layers[0], ablate):
            ablated = _scores_of_items(call, n * c, build, layer.outputs.dtype, "channel ablations")
        y = layer.outputs.view(n, 1).to(ablated.device)
        weights = (y - ablated.view(n, c)) / y
        return weights.to(a.device, a.dtype).view((n, c) + (1,) * (a.dim() - 2))

    def _channel_positions(self, layer: LayerValues, owner: str) -> Tensor:
        """``(C, K)`` flat positions (within one example's layer output) of each channel.

        Found by passing element indices through the reshape transform (on the CPU, once per
        call), so any transform that only rearranges elements (indexing, reshape, permute)
        works.
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
