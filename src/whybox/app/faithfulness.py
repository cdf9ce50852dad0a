"""How far to trust a cell: its deletion curve against random orders of the same features.

Removing the features a faithful map ranks first should make the explained output fall
faster than removing them in a random order. Every input-shaped cell gets that check on
its own example (:func:`deletion_check`): the model's selected output after removing each
tenth of the features in the map's order (MoRF) and in :data:`N_RANDOM` random orders, set
to the cell's baselines, with both areas under the curves. It costs ``11 + 11 *
N_RANDOM`` forward rows, in chunks, far less than most methods.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from whybox import metrics

__all__ = ["deletion_check", "N_STEPS", "N_RANDOM"]

#: points of the curve after the unperturbed one: a tenth of the features per step
N_STEPS = 10
#: random removal orders the map's order is compared with (their curves are averaged)
N_RANDOM = 4


def _finite(values: Sequence[float]) -> list[float | None]:
    """JSON-safe floats: ``None`` for NaN and infinities."""
    return [v if math.isfinite(v) else None for v in values]


def deletion_check(
    model: Any,
    inputs: tuple[Tensor, ...],
    attributions: Sequence[Tensor],
    baselines: tuple[Tensor, ...],
    *,
    target: Any = None,
    forward_args: Any = None,
) -> dict[str, Any] | None:
    """The deletion curve of one example's map and the mean one of random orders.

    Parameters
    ----------
    model : callable
        The cell's (guarded) model.
    inputs, baselines : tuple of Tensor, each ``(1, ...)``
        The example and what a removed feature becomes.
    attributions : sequence of Tensor, each shaped like its input
    target, forward_args : optional
        As the method was given them.

    Returns
    -------
    dict or None
        ``fractions``, ``morf`` and ``random`` (the curves, ``N_STEPS + 1`` points each),
        ``morf_auc`` and ``random_auc`` (their areas), ``n_random``; ``None`` where the
        maps are not shaped like the inputs (layer maps, CAMs) or the example is not one
        row.
    """
    maps = tuple(attributions)
    if (
        len(maps) != len(inputs)
        or any(tuple(a.shape) != tuple(x.shape) for a, x in zip(maps, inputs))
        or inputs[0].shape[0] != 1
    ):
        return None
    maps = tuple(a.detach() for a in maps)

    def curve(order: str, seed: int | None = None) -> Any:
        # the example's own rows, targets and forward arguments as the method had them
        return metrics.deletion(
            model,
            inputs,
            maps,
            baselines=baselines,
            target=target,
            forward_args=forward_args,
            n_steps=N_STEPS,
            order=order,
            seed=seed,
        )

    morf = curve("morf")
    # one call per random order (no tiling to guess which arguments are per example)
    randoms = [curve("random", seed) for seed in range(N_RANDOM)]
    random_curve = torch.cat([r.curve for r in randoms]).mean(dim=0, keepdim=True)
    random_auc = float(torch.cat([r.score for r in randoms]).double().mean())
    curve = torch.cat([morf.curve, random_curve]).double()
    return {
        "fractions": _finite(morf.fractions.double().tolist()),
        "morf": _finite(curve[0].tolist()),
        "random": _finite(curve[1].tolist()),
        "morf_auc": _finite([float(morf.score.double().mean())])[0],
        "random_auc": _finite([random_auc])[0],
        "n_random": N_RANDOM,
    }
