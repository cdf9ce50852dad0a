"""Attention flow (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", 2020).

The layers are a flow network: one node per token and layer boundary (``layers + 1`` rows
of ``tokens`` nodes), an edge from token ``i`` above layer ``l`` to token ``j`` below it
with capacity ``A_l[i, j]`` (the fused, residual-added, row-normalised attention that
rollout also uses). The flow of query ``q`` to input token ``j`` is the maximum flow from
``q``'s node at the top to ``j``'s node at the bottom.

That is one max-flow problem per (query, input token) pair on a graph of
``(layers + 1) * tokens`` nodes: meant for short inputs (tens of tokens). The max-flow
solver (:func:`max_flow`, Dinic's algorithm on a dense residual matrix) is written here,
in NumPy, so whybox needs no graph library.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .rollout import layer_maps

__all__ = ["attention_flow", "max_flow", "flow_network"]

# residual capacity below this counts as saturated (capacities are attention weights <= 1)
_TOLERANCE = 1e-12


def attention_flow(
    attentions: Sequence[Tensor] | Tensor,
    *,
    head_fusion: str = "mean",
    add_residual: bool = True,
    queries: Sequence[int] | None = None,
    attention_mask: Tensor | None = None,
) -> Tensor:
    """Maximum attention flow from last-layer tokens to input tokens.

    Parameters
    ----------
    attentions : sequence of Tensor, or Tensor
        One ``(batch, heads, tokens, tokens)`` tensor per layer (first layer first), or
        stacked ``(layers, batch, heads, tokens, tokens)``.
    head_fusion : {"mean", "max", "min"}
        How the heads of a layer are combined (as in :func:`attention_rollout`).
    add_residual : bool
        Add the identity to each layer's fused attention before renormalising.
    queries : sequence of int, optional
        The last-layer tokens whose flows are computed (default: all of them). Each costs
        ``tokens`` max-flow problems per example.
    attention_mask : Tensor, optional
        ``(batch, tokens)``, nonzero for real tokens: padded tokens are left out of the
        network (their flows are 0), which only saves time -- no real token attends to
        them.

    Returns
    -------
    Tensor
        ``(batch, len(queries), tokens)`` flows (``(batch, tokens, tokens)`` by default),
        in the attentions' dtype and device. Each flow lies in ``[0, 1]``; flows to
        different input tokens are separate problems, so a row need not sum to 1.
        With one layer the flow is the layer's (fused, residual-added) attention itself.
    """
    maps = layer_maps(
        attentions, head_fusion=head_fusion, add_residual=add_residual, owner="attention_flow"
    )
    batch, tokens, _ = maps[0].shape
    chosen = list(range(tokens)) if queries is None else [int(q) for q in queries]
    for q in chosen:
        if not -tokens <= q < tokens:
            raise ValueError(
                "The 'queries' parameter of attention_flow must hold token positions in "
                f"[-{tokens}, {tokens}). Got {q}."
            )
    chosen = [q % tokens for q in chosen]
    if attention_mask is not None and tuple(attention_mask.shape) != (batch, tokens):
        raise ValueError(
            f"The 'attention_mask' parameter of attention_flow must have shape "
            f"({batch}, {tokens}). Got {tuple(attention_mask.shape)}."
        )
    # one host copy of the small maps; the solver is sequential
    stacked = torch.stack(maps, dim=1).detach().to("cpu", torch.float64).numpy()
    flows = np.zeros((batch, len(chosen), tokens))
    for b in range(batch):
        keep = np.arange(tokens)
        if attention_mask is not None:
            keep = np.nonzero(attention_mask[b].detach().cpu().numpy())[0]
        sub = stacked[b][:, keep][:, :, keep]  # (layers, kept, kept)
        position = {int(t): i for i, t in enumerate(keep)}
        capacity = flow_network(sub)
        n_layers, kept = sub.shape[0], len(keep)
        for row, q in enumerate(chosen):
            if q not in position:
                continue  # a padded query: no flow
            source = n_layers * kept + position[q]
            for j, token in enumerate(keep):
                flows[b, row, token] = max_flow(capacity, source, j)
    return torch.as_tensor(flows, dtype=maps[0].dtype, device=maps[0].device)


def flow_network(maps: np.ndarray) -> np.ndarray:
    """The dense capacity matrix of the attention graph.

    Parameters
    ----------
    maps : ndarray
        ``(layers, tokens, tokens)``: layer ``l``'s (fused) attention, row = query.

    Returns
    -------
    ndarray
        ``(V, V)`` with ``V = (layers + 1) * tokens``; node ``l * tokens + t`` is token
        ``t`` below layer ``l`` (``l = 0``: the input tokens, ``l = layers``: the last
        layer's outputs); ``capacity[(l + 1) * T + i, l * T + j] = maps[l, i, j]``.
    """
    n_layers, tokens, _ = maps.shape
    size = (n_layers + 1) * tokens
    capacity = np.zeros((size, size))
    for layer in range(n_layers):
        above = slice((layer + 1) * tokens, (layer + 2) * tokens)
        below = slice(layer * tokens, (layer + 1) * tokens)
        capacity[above, below] = maps[layer]
    return capacity


def max_flow(capacity: np.ndarray, source: int, sink: int) -> float:
    """The value of a maximum flow from ``source`` to ``sink`` (Dinic's algorithm).

    Parameters
    ----------
    capacity : ndarray
        ``(V, V)`` non-negative edge capacities (``capacity[u, v]``: edge ``u -> v``);
        not modified.
    source, sink : int
        Node indices.

    Returns
    -------
    float
        The maximum flow value (equal to the minimum cut's capacity).
    """
    residual = np.array(capacity, dtype=np.float64)
    if np.any(residual < 0):
        raise ValueError("The 'capacity' parameter of max_flow must be non-negative.")
    n = residual.shape[0]
    if source == sink:
        raise ValueError("The 'sink' parameter of max_flow must differ from the source.")
    total = 0.0
    while True:
        level = _levels(residual, source, sink)
        if level[sink] < 0:
            return total
        # edges of the level graph, fixed for this phase
        useful = level >= 0
        edges = [
            np.nonzero((residual[u] > _TOLERANCE) & (level == level[u] + 1))[0].tolist()
            if useful[u] and level[u] < level[sink]
            else []
            for u in range(n)
        ]
        pointer = [0] * n
        total += _blocking_flow(residual, edges, pointer, source, sink)


def _levels(residual: np.ndarray, source: int, sink: int) -> np.ndarray:
    """Breadth-first distances from ``source`` over residual edges (-1: unreachable)."""
    level = np.full(residual.shape[0], -1)
    level[source] = 0
    frontier = np.array([source])
    depth = 0
    while frontier.size and level[sink] < 0:
        depth += 1
        reached = (residual[frontier] > _TOLERANCE).any(axis=0) & (level < 0)
        frontier = np.nonzero(reached)[0]
        level[frontier] = depth
    return level


def _blocking_flow(
    residual: np.ndarray, edges: list[list[int]], pointer: list[int], source: int, sink: int
) -> float:
    """Push flow along level-graph paths until none is left (iterative depth-first)."""
    pushed = 0.0
    path = [source]
    while path:
        u = path[-1]
        if u == sink:
            steps = list(zip(path[:-1], path[1:]))
            amount = min(residual[a, b] for a, b in steps)
            for a, b in steps:
                residual[a, b] -= amount
                residual[b, a] += amount
            pushed += amount
            path = [source]  # restart; saturated edges are skipped by the pointers
            continue
        out = edges[u]
        while pointer[u] < len(out) and residual[u, out[pointer[u]]] <= _TOLERANCE:
            pointer[u] += 1
        if pointer[u] < len(out):
            path.append(out[pointer[u]])
        else:
            path.pop()  # a dead end: never visit it again in this phase
            if path:
                pointer[path[-1]] += 1
    return pushed
