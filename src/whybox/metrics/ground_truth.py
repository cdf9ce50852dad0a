"""Tasks with known answers, generated offline: models whose correct explanation is known.

Every generator returns a :class:`GroundTruthTask`: a small fixed model (eval mode, no
training), inputs, the target to explain, baselines, the features that matter
(``mask``) and, where it is defined exactly, the attribution itself.

* :func:`linear_task`: ``f(x) = w.x + b`` (some ``w_i = 0``); attribution
  ``w * (x - baseline)`` (what IG, DeepLift, Shapley values and ``x * grad`` from a zero
  baseline give);
* :func:`additive_task`: ``f(x) = sum_i g_i(x_i)`` with nonlinear ``g_i``; Shapley values
  (and IG) are ``g_i(x_i) - g_i(baseline_i)``;
* :func:`gaussian_clusters_task`: OpenXAI-style synthetic data (Agarwal et al., 2022):
  Gaussian clusters, each with its own masked weight vector; the model scores a point
  with the weights of its nearest centre, so the truth is that cluster's masked weights;
* :func:`boolean_game_task`: shap's AND / OR / XOR games on binary features, as
  multilinear polynomials; exact Shapley values from a zero baseline;
* :func:`planted_patch_task`: images whose class is decided by a bright square alone (a
  fixed detector: window mean, global max pool); the mask is the square;
* :func:`planted_keyword_task`: token sequences with one keyword that alone decides the
  class; the model reads embeddings ``(N, T, D)``; the mask is the keyword's position.

Use :data:`TASKS` / :func:`make_task` to build them by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from whybox.core.validation import check_choice, check_int, fail

__all__ = [
    "GroundTruthTask",
    "linear_task",
    "additive_task",
    "gaussian_clusters_task",
    "boolean_game_task",
    "planted_patch_task",
    "planted_keyword_task",
    "TASKS",
    "make_task",
]


@dataclass
class GroundTruthTask:
    """A model and data with a known explanation.

    Attributes
    ----------
    name : str
    kind : str
        ``"tabular"``, ``"image"`` or ``"text"``.
    model : nn.Module
        In eval mode; its parameters are fixed (nothing is trained).
    inputs : Tensor, shape ``(N, ...)``
    target : int or None
        The output to explain.
    baselines : Tensor, shape ``(N, ...)``
        The reference the exact attributions are defined against.
    mask : Tensor, bool, shape ``(N, ...)`` like ``inputs``
        The elements that matter.
    attributions : Tensor or None, shape ``(N, ...)``
        The exact attribution where one is defined (``None`` for image / text tasks,
        whose truth is the ``mask``).
    feature_mask : Tensor, long, shape ``(1, ...)``
        Feature ids for faithfulness curves and agreement (pixels, tokens, features).
    coarse_mask : Tensor, long, shape ``(1, ...)``
        Coarser ids for perturbation methods (blocks of pixels; otherwise the features).
    top_k : int
        How many features matter per example (for top-k agreement).
    layer : str or None
        A convolutional layer name for CAM and layer methods.
    sliding_window : tuple of int
        An occlusion window of one feature.
    description : str
    extras : dict
        Task-specific data (``token_ids`` and ``embedding`` for the text task, ...).
    """

    name: str
    kind: str
    model: nn.Module
    inputs: Tensor
    target: int | None
    baselines: Tensor
    mask: Tensor
    attributions: Tensor | None
    feature_mask: Tensor
    coarse_mask: Tensor
    top_k: int
    layer: str | None = None
    sliding_window: tuple[int, ...] = ()
    description: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    def to(self, device: Any) -> GroundTruthTask:
        """The task with its model and tensors on ``device``."""
        moved = {
            key: value.to(device) if isinstance(value, (Tensor, nn.Module)) else value
            for key, value in self.__dict__.items()
        }
        moved["extras"] = {
            k: v.to(device) if isinstance(v, (Tensor, nn.Module)) else v
            for k, v in self.extras.items()
        }
        return GroundTruthTask(**moved)

    @property
    def truth(self) -> Tensor:
        """The exact attributions, or the mask as 0/1 where none is defined."""
        if self.attributions is not None:
            return self.attributions
        return self.mask.to(self.inputs.dtype)


def _generator(seed: int) -> torch.Generator:
    check_int("ground_truth", "seed", seed)
    return torch.Generator().manual_seed(int(seed))


def _check_sizes(owner: str, **sizes: int) -> None:
    for name, value in sizes.items():
        check_int(owner, name, value, minimum=1)


def _feature_ids(shape: tuple[int, ...]) -> Tensor:
    n = 1
    for s in shape:
        n *= s
    return torch.arange(n).view((1,) + shape)


# -- tabular ---------------------------------------------------------------------------------
def linear_task(
    *, n_samples: int = 64, n_features: int = 8, n_informative: int | None = None, seed: int = 0
) -> GroundTruthTask:
    """``f(x) = w.x + b`` with ``n_informative`` non-zero weights.

    Returns
    -------
    GroundTruthTask
        ``attributions = w * (x - 0)``; inputs ``(n_samples, n_features)``; output
        ``(N, 1)``, ``target=None``.
    """
    _check_sizes("linear_task", n_samples=n_samples, n_features=n_features)
    informative = (n_features // 2 or 1) if n_informative is None else n_informative
    check_int("linear_task", "n_informative", informative, minimum=1, maximum=n_features)
    g = _generator(seed)
    weights = torch.randn(n_features, generator=g).sign() * (
        0.5 + torch.rand(n_features, generator=g)
    )
    weights[torch.randperm(n_features, generator=g)[informative:]] = 0.0
    model = nn.Linear(n_features, 1)
    with torch.no_grad():
        model.weight.copy_(weights.view(1, -1))
        model.bias.fill_(0.3)
    x = torch.randn(n_samples, n_features, generator=g)
    baselines = torch.zeros_like(x)
    mask = (weights != 0).expand_as(x).clone()
    return GroundTruthTask(
        "linear",
        "tabular",
        model.eval(),
        x,
        None,
        baselines,
        mask,
        weights * (x - baselines),
        _feature_ids((n_features,)),
        _feature_ids((n_features,)),
        informative,
        sliding_window=(1,),
        description="f(x) = w.x + b; attribution w * (x - baseline)",
    )


class _Additive(nn.Module):
    """``f(x) = sum_i a_i * g_{k_i}(x_i)`` with ``g`` in (x, x^2, sin, tanh)."""

    def __init__(self, coefficients: Tensor, kinds: Tensor) -> None:
        super().__init__()
        self.register_buffer("coefficients", coefficients)
        self.register_buffer("kinds", kinds)

    def terms(self, x: Tensor) -> Tensor:
        shapes = torch.stack([x, x.square(), torch.sin(2 * x), torch.tanh(2 * x)])  # (4, N, D)
        picked = shapes.gather(0, self.kinds.view(1, 1, -1).expand(1, *x.shape)).squeeze(0)
        return picked * self.coefficients

    def forward(self, x: Tensor) -> Tensor:
        return self.terms(x).sum(dim=1, keepdim=True)


def additive_task(
    *, n_samples: int = 64, n_features: int = 8, n_informative: int | None = None, seed: int = 0
) -> GroundTruthTask:
    """A sum of nonlinear one-feature functions.

    Returns
    -------
    GroundTruthTask
        ``attributions = g_i(x_i) - g_i(0)`` (exact Shapley values; IG too).
    """
    _check_sizes("additive_task", n_samples=n_samples, n_features=n_features)
    informative = (n_features // 2 or 1) if n_informative is None else n_informative
    check_int("additive_task", "n_informative", informative, minimum=1, maximum=n_features)
    g = _generator(seed)
    coefficients = 0.5 + torch.rand(n_features, generator=g)
    coefficients[torch.randperm(n_features, generator=g)[informative:]] = 0.0
    kinds = torch.randint(0, 4, (n_features,), generator=g)
    model = _Additive(coefficients, kinds).eval()
    x = torch.randn(n_samples, n_features, generator=g)
    baselines = torch.zeros_like(x)
    with torch.no_grad():
        truth = model.terms(x) - model.terms(baselines)
    mask = (coefficients != 0).expand_as(x).clone()
    return GroundTruthTask(
        "additive",
        "tabular",
        model,
        x,
        None,
        baselines,
        mask,
        truth,
        _feature_ids((n_features,)),
        _feature_ids((n_features,)),
        informative,
        sliding_window=(1,),
        description="f(x) = sum_i g_i(x_i); attribution g_i(x_i) - g_i(baseline_i)",
    )


class _NearestCentreLogistic(nn.Module):
    """Logits ``[0, z]`` with ``z = (w_c * m_c) . (x - mu_c)``, ``c`` the nearest centre."""

    def __init__(self, centres: Tensor, masked_weights: Tensor) -> None:
        super().__init__()
        self.register_buffer("centres", centres)
        self.register_buffer("masked_weights", masked_weights)

    def forward(self, x: Tensor) -> Tensor:
        nearest = torch.cdist(x.detach(), self.centres).argmin(dim=1)  # piecewise: no gradient
        z = (self.masked_weights[nearest] * (x - self.centres[nearest])).sum(dim=1)
        return torch.stack([torch.zeros_like(z), z], dim=1)


def gaussian_clusters_task(
    *,
    n_samples: int = 64,
    n_features: int = 10,
    n_clusters: int = 4,
    n_relevant: int = 3,
    spread: float = 0.3,
    seed: int = 0,
) -> GroundTruthTask:
    """OpenXAI-style clusters with per-cluster masked weights.

    Centres lie far apart (distance >> ``spread``), so every sample's nearest centre is
    its own and, locally, ``f`` is linear with the cluster's masked weights.

    Returns
    -------
    GroundTruthTask
        ``attributions`` = each sample's masked weights (the local gradient); ``mask`` its
        ``n_relevant`` features; output ``(N, 2)``, ``target=1``.
    """
    _check_sizes(
        "gaussian_clusters_task",
        n_samples=n_samples,
        n_features=n_features,
        n_clusters=n_clusters,
        n_relevant=n_relevant,
    )
    check_int("gaussian_clusters_task", "n_relevant", n_relevant, maximum=n_features)
    g = _generator(seed)
    centres = 4.0 * torch.randn(n_clusters, n_features, generator=g)
    masks = torch.zeros(n_clusters, n_features, dtype=torch.bool)
    for c in range(n_clusters):
        masks[c, torch.randperm(n_features, generator=g)[:n_relevant]] = True
    weights = torch.randn(n_clusters, n_features, generator=g).sign() * (
        0.5 + torch.rand(n_clusters, n_features, generator=g)
    )
    masked = weights * masks
    cluster = torch.arange(n_samples) % n_clusters
    x = centres[cluster] + spread * torch.randn(n_samples, n_features, generator=g)
    model = _NearestCentreLogistic(centres, masked).eval()
    return GroundTruthTask(
        "gaussian_clusters",
        "tabular",
        model,
        x,
        1,
        centres[cluster].clone(),
        masks[cluster].clone(),
        masked[cluster].clone(),
        _feature_ids((n_features,)),
        _feature_ids((n_features,)),
        n_relevant,
        sliding_window=(1,),
        description="nearest-centre logistic model; truth = the cluster's masked weights",
        extras={"cluster": cluster},
    )


class _BooleanGame(nn.Module):
    """The multilinear extension of AND / OR / XOR of features 0 and 1."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: Tensor) -> Tensor:
        a, b = x[:, 0], x[:, 1]
        if self.kind == "and":
            value = a * b
        elif self.kind == "or":
            value = a + b - a * b
        else:
            value = a + b - 2 * a * b
        return value.unsqueeze(1)


def boolean_game_task(
    kind: str = "xor", *, n_samples: int = 64, n_features: int = 6, seed: int = 0
) -> GroundTruthTask:
    """shap's AND / OR / XOR games: binary features, only features 0 and 1 matter.

    Exact Shapley values against a zero baseline (``x`` in {0, 1}):

    * AND ``ab``: ``phi_0 = phi_1 = ab / 2``;
    * OR ``a + b - ab``: ``phi_0 = a - ab / 2``;
    * XOR ``a + b - 2ab``: ``phi_0 = a - ab``.

    IG on the multilinear extension gives the same numbers.

    Returns
    -------
    GroundTruthTask
        Output ``(N, 1)``, ``target=None``.
    """
    check_choice("boolean_game_task", "kind", kind, ("and", "or", "xor"))
    _check_sizes("boolean_game_task", n_samples=n_samples)
    check_int("boolean_game_task", "n_features", n_features, minimum=2)
    g = _generator(seed)
    x = torch.randint(0, 2, (n_samples, n_features), generator=g).to(torch.get_default_dtype())
    a, b = x[:, 0], x[:, 1]
    truth = torch.zeros_like(x)
    if kind == "and":
        truth[:, 0] = truth[:, 1] = a * b / 2
    elif kind == "or":
        truth[:, 0], truth[:, 1] = a - a * b / 2, b - a * b / 2
    else:
        truth[:, 0], truth[:, 1] = a - a * b, b - a * b
    mask = torch.zeros_like(x, dtype=torch.bool)
    mask[:, :2] = True
    return GroundTruthTask(
        f"boolean_{kind}",
        "tabular",
        _BooleanGame(kind).eval(),
        x,
        None,
        torch.zeros_like(x),
        mask,
        truth,
        _feature_ids((n_features,)),
        _feature_ids((n_features,)),
        2,
        sliding_window=(1,),
        description=f"{kind.upper()} of features 0 and 1 (exact Shapley)",
    )


# -- images and texts ------------------------------------------------------------------------
class _PatchDetector(nn.Module):
    """Window mean (a fixed conv), global max pool, logits ``[0, gain * (m - threshold)]``."""

    def __init__(self, patch: int, threshold: float, gain: float = 10.0) -> None:
        super().__init__()
        self.detector = nn.Conv2d(1, 1, patch, bias=False)
        self.threshold = threshold
        self.gain = gain
        with torch.no_grad():
            self.detector.weight.fill_(1.0 / patch**2)
        self.detector.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        score = self.detector(x).flatten(1).amax(dim=1)
        z = self.gain * (score - self.threshold)
        return torch.stack([-z, z], dim=1)


def planted_patch_task(
    *, n_samples: int = 16, size: int = 16, patch: int = 4, seed: int = 0
) -> GroundTruthTask:
    """Grey-scale noise images ``(N, 1, size, size)`` with a bright ``patch x patch``
    square at a random place; the square alone makes class 1.

    Background pixels are uniform in ``[0, 0.3]``, the square is 1; the model's class-1
    logit is ``10 * (max window mean - 0.65)``, so removing the square flips the class.

    Returns
    -------
    GroundTruthTask
        ``mask`` of shape ``(N, 1, size, size)``; ``target=1``; ``layer="detector"``.
    """
    _check_sizes("planted_patch_task", n_samples=n_samples, size=size, patch=patch)
    if patch > size:
        fail("planted_patch_task", "patch", f"an int <= size ({size})", patch)
    g = _generator(seed)
    x = 0.3 * torch.rand(n_samples, 1, size, size, generator=g)
    mask = torch.zeros_like(x, dtype=torch.bool)
    rows = torch.randint(0, size - patch + 1, (n_samples,), generator=g)
    cols = torch.randint(0, size - patch + 1, (n_samples,), generator=g)
    for i, (r, c) in enumerate(zip(rows.tolist(), cols.tolist())):  # data generation only
        mask[i, 0, r : r + patch, c : c + patch] = True
    x = torch.where(mask, torch.ones_like(x), x)
    blocks = max(1, patch // 2)
    grid = torch.arange(size) // blocks
    coarse = (grid.view(-1, 1) * ((size + blocks - 1) // blocks) + grid.view(1, -1)).view(
        1, 1, size, size
    )
    return GroundTruthTask(
        "planted_patch",
        "image",
        _PatchDetector(patch, 0.65).eval(),
        x,
        1,
        torch.zeros_like(x),
        mask,
        None,
        _feature_ids((1, size, size)),
        coarse,
        patch * patch,
        layer="detector",
        sliding_window=(1, blocks, blocks),
        description="a bright square alone decides the class",
    )


class _KeywordDetector(nn.Module):
    """Reads dimension 0 of each token embedding, max over positions -> logits."""

    def __init__(self, dim: int, gain: float = 10.0) -> None:
        super().__init__()
        self.read = nn.Linear(dim, 1, bias=False)
        self.gain = gain
        with torch.no_grad():
            self.read.weight.zero_()
            self.read.weight[0, 0] = 1.0
        self.read.requires_grad_(False)

    def forward(self, embedded: Tensor) -> Tensor:
        score = self.read(embedded).squeeze(-1).amax(dim=1)
        z = self.gain * (score - 0.5)
        return torch.stack([-z, z], dim=1)


def planted_keyword_task(
    *,
    n_samples: int = 16,
    length: int = 12,
    vocab_size: int = 50,
    n_keywords: int = 3,
    dim: int = 4,
    seed: int = 0,
) -> GroundTruthTask:
    """Token sequences with one planted keyword that alone decides the class.

    Token ``t < n_keywords`` is a keyword: its embedding has a 1 in dimension 0, every
    other token a 0 there (other dimensions are noise the model never reads). The model
    takes the embedded sequence ``(N, length, dim)``.

    Returns
    -------
    GroundTruthTask
        ``mask`` ``(N, length, dim)`` (the keyword's position); ``extras["token_ids"]``
        ``(N, length)`` and ``extras["embedding"]`` (the ``nn.Embedding``).
    """
    _check_sizes(
        "planted_keyword_task", n_samples=n_samples, length=length, n_keywords=n_keywords, dim=dim
    )
    if vocab_size <= n_keywords:
        fail(
            "planted_keyword_task", "vocab_size", f"an int > n_keywords ({n_keywords})", vocab_size
        )
    g = _generator(seed)
    embedding = nn.Embedding(vocab_size, dim)
    with torch.no_grad():
        embedding.weight.copy_(0.3 * torch.randn(vocab_size, dim, generator=g))
        embedding.weight[:, 0] = 0.0
        embedding.weight[:n_keywords, 0] = 1.0
    ids = torch.randint(n_keywords, vocab_size, (n_samples, length), generator=g)
    positions = torch.randint(0, length, (n_samples,), generator=g)
    keywords = torch.randint(0, n_keywords, (n_samples,), generator=g)
    ids[torch.arange(n_samples), positions] = keywords
    with torch.no_grad():
        x = embedding(ids)
    token_mask = torch.zeros(n_samples, length, dtype=torch.bool)
    token_mask[torch.arange(n_samples), positions] = True
    mask = token_mask.unsqueeze(-1).expand(n_samples, length, dim).clone()
    tokens = torch.arange(length).view(1, length, 1).expand(1, length, dim).clone()
    return GroundTruthTask(
        "planted_keyword",
        "text",
        _KeywordDetector(dim).eval(),
        x,
        1,
        torch.zeros_like(x),
        mask,
        None,
        tokens,
        tokens,
        1,
        sliding_window=(1, dim),
        description="one keyword alone decides the class (embedded tokens)",
        extras={"token_ids": ids, "embedding": embedding, "token_mask": token_mask},
    )


#: name -> generator (keyword options ``n_samples`` and ``seed`` are shared by all)
TASKS: dict[str, Callable[..., GroundTruthTask]] = {
    "linear": linear_task,
    "additive": additive_task,
    "gaussian_clusters": gaussian_clusters_task,
    "boolean_and": lambda **kw: boolean_game_task("and", **kw),
    "boolean_or": lambda **kw: boolean_game_task("or", **kw),
    "boolean_xor": lambda **kw: boolean_game_task("xor", **kw),
    "planted_patch": planted_patch_task,
    "planted_keyword": planted_keyword_task,
}


def make_task(name: str, **options: Any) -> GroundTruthTask:
    """Build the task registered as ``name`` in :data:`TASKS` with ``options``."""
    check_choice("make_task", "name", name, tuple(TASKS))
    return TASKS[name](**options)
