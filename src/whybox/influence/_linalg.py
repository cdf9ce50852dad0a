"""Linear algebra of the influence functions: Arnoldi iteration, eigen-decompositions,
parameter flattening and functional calls of a model.

Whybox's influence functions work on flat parameter vectors (one 1-D tensor over the
chosen parameters). Captum's private helpers work on parameters as tuples of tensors;
the ``parameter_*`` functions here give whybox's flat algorithms that interface, so
Captum-style code (and Captum's tests, which import the helpers as oracles) runs on
whybox's own implementation. They are re-exported at Captum's private paths
(``influence._utils.common`` and ``influence._core.arnoldi_influence_function``) under
Captum's underscore names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn import Module

__all__ = [
    "arnoldi",
    "custom_functional_call",
    "distill",
    "eig_sorted",
    "flatten_params",
    "functional_call",
    "parameter_arnoldi",
    "parameter_distill",
    "top_eigen_general",
    "unflatten_params_factory",
]


# -- parameters as tuples of tensors <-> flat vectors ----------------------------------------
def flatten_params(params: Sequence[Tensor]) -> Tensor:
    """Concatenate a tuple of tensors (a model's parameters) into one 1-D tensor.

    Parameters
    ----------
    params : sequence of Tensor

    Returns
    -------
    Tensor
        ``(sum of numels,)``, the tensors' entries in order (row-major each).
    """
    return torch.cat([p.reshape(-1) for p in params])


def unflatten_params_factory(
    param_shapes: Sequence[Sequence[int]] | Sequence[Tensor],
) -> Callable[[Tensor], tuple[Tensor, ...]]:
    """The inverse of :func:`flatten_params` for parameters of the given shapes.

    Parameters
    ----------
    param_shapes : sequence of shapes (or of tensors, whose shapes are iterated)
        Each entry is iterated for its sizes: a shape tuple, ``torch.Size``, or a tensor
        (iterating a tensor gives its first-dimension slices, so Captum's convention of
        passing shapes is the intended use).

    Returns
    -------
    callable
        ``f(flat) -> tuple of Tensor``: views of ``flat`` with the given shapes.
    """
    shapes = [tuple(int(s) for s in shape) for shape in param_shapes]
    sizes = [math.prod(shape) for shape in shapes]

    def unflatten(flattened_params: Tensor) -> tuple[Tensor, ...]:
        pieces = torch.split(flattened_params[: sum(sizes)], sizes)
        return tuple(piece.view(shape) for piece, shape in zip(pieces, shapes))

    return unflatten


# -- eigen-decompositions --------------------------------------------------------------------
def eig_sorted(h: Tensor) -> tuple[Tensor, Tensor]:
    """Real eigenvalues and eigenvectors of a (possibly non-symmetric) square matrix,
    sorted by ascending eigenvalue, like ``torch.linalg.eigh``.

    Parameters
    ----------
    h : Tensor ``(n, n)``
        A matrix with real eigenvalues (the imaginary parts are dropped).

    Returns
    -------
    (Tensor ``(n,)``, Tensor ``(n, n)``)
        Eigenvalues ascending, and the eigenvectors as columns in the same order.
    """
    values, vectors = torch.linalg.eig(h)
    values, vectors = values.real, vectors.real
    order = torch.argsort(values)
    return values[order], vectors[:, order]


def top_eigen_general(
    h: Tensor, k: int | None, hessian_reg: float, hessian_inverse_tol: float
) -> tuple[Tensor, Tensor]:
    """The top ``k`` eigenpairs of ``h + hessian_reg I`` above ``hessian_inverse_tol``.

    ``h`` need not be symmetric (the Arnoldi matrix is only nearly so): the general
    eigen-decomposition's real parts are used. Eigenvalues are ascending; each
    eigenvector's sign makes its entries sum positive (a deterministic choice, Captum's).

    Parameters
    ----------
    h : Tensor ``(n, n)``
    k : int or None
        Eigenpairs kept (all above the tolerance when ``None``).
    hessian_reg : float
        Added to the diagonal first.
    hessian_inverse_tol : float
        Eigenpairs whose eigenvalue is not above it are dropped.

    Returns
    -------
    (Tensor ``(m,)``, Tensor ``(n, m)``)
    """
    h = h + torch.eye(len(h), dtype=h.dtype, device=h.device) * hessian_reg
    values, vectors = eig_sorted(h)
    keep = values > hessian_inverse_tol
    values, vectors = values[keep], vectors[:, keep]
    if k is not None:
        values, vectors = values[-k:], vectors[:, -k:]
    vectors = vectors * (2.0 * (vectors.sum(dim=0) > 0) - 1.0).to(vectors.dtype).unsqueeze(0)
    return values, vectors


# -- Arnoldi iteration on flat vectors -------------------------------------------------------
def arnoldi(
    hvp: Callable[[Tensor], Tensor],
    start: Tensor,
    n: int,
    tol: float,
    store: torch.device,
    progress: Any = None,
) -> tuple[list[Tensor], Tensor]:
    """``n`` steps of the Arnoldi iteration (modified Gram-Schmidt) for the matrix ``A``
    that ``hvp`` multiplies by.

    Parameters
    ----------
    hvp : callable
        ``hvp(v) -> A v`` for a flat ``v`` on ``start``'s device.
    start : Tensor ``(P,)``
        The start vector (normalised here).
    n : int
        Iterations.
    tol : float
        Stop when a new basis vector's norm before normalisation falls below it.
    store : torch.device
        Where the basis and the Hessenberg matrix are kept.
    progress : object with ``update(int)``, optional
        Told once per iteration.

    Returns
    -------
    (list of Tensor, Tensor)
        ``qs[:k]`` (``k`` the last iteration run) and ``H[:k, :k - 1]``: with the last
        basis vector and last row dropped (as :func:`distill` does), the rest is an
        orthonormal basis of the Krylov subspace and ``A``'s restriction to it.
    """
    compute = start.device
    h = torch.zeros(n + 1, n, dtype=start.dtype, device=store)
    qs = [(start * torch.div(1.0, start.dot(start).sqrt())).to(store)]
    k = 0
    for k in range(1, n + 1):
        v = hvp(qs[k - 1].to(compute)).to(store)
        for i in range(k):
            h[i, k - 1] = qs[i].dot(v)
            v = v - h[i, k - 1] * qs[i]
        h[k, k - 1] = v.dot(v).sqrt()
        if progress is not None:
            progress.update(1)
        if h[k, k - 1] < tol:
            break
        qs.append(v * torch.div(1.0, h[k, k - 1]))
    return qs[:k], h[:k, : k - 1]


def distill(
    qs: list[Tensor], h: Tensor, k: int | None, hessian_reg: float, hessian_inverse_tol: float
) -> tuple[Tensor, Tensor]:
    """The top eigenpairs of the matrix :func:`arnoldi` ran on, in the standard basis.

    Parameters
    ----------
    qs, h
        :func:`arnoldi`'s output.
    k : int or None
    hessian_reg, hessian_inverse_tol : float
        See :func:`top_eigen_general`.

    Returns
    -------
    (Tensor ``(m,)``, Tensor ``(P, m)``)
        Eigenvalues ascending and the eigenvectors as columns.

    Raises
    ------
    ValueError
        When the basis is empty or no eigenvalue is above ``hessian_inverse_tol``.
    """
    qs, h = qs[:-1], h[:-1]
    if not qs:
        raise ValueError(
            "Arnoldi basis is empty. Consider lowering the `arnoldi_tol` argument or "
            "increasing `arnoldi_dim`."
        )
    values, vectors = top_eigen_general(h, k, hessian_reg, hessian_inverse_tol)
    if vectors.shape[1] == 0:
        raise ValueError(
            "Restriction of Hessian to Krylov subspace has no positive eigenvalues "
            "above hessian_inverse_tol, so cannot take its square root."
        )
    return values, torch.stack(qs, dim=1) @ vectors


# -- Captum's tuple-of-tensors interface -----------------------------------------------------
def parameter_arnoldi(
    hvp: Callable[[tuple[Tensor, ...]], Sequence[Tensor]],
    b: tuple[Tensor, ...],
    n: int,
    tol: float,
    projection_device: torch.device,
    show_progress: bool,
) -> tuple[list[tuple[Tensor, ...]], Tensor]:
    """Captum's ``_parameter_arnoldi``: :func:`arnoldi` with vectors as tuples of tensors.

    Parameters
    ----------
    hvp : callable
        ``hvp(v) -> A v`` for ``v`` a tuple of tensors shaped as ``b``.
    b : tuple of Tensor
        The start vector; ``hvp`` is called on its device.
    n : int
        Iterations.
    tol : float
        Early-stopping norm.
    projection_device : torch.device
        Where the returned basis and matrix live.
    show_progress : bool
        A tqdm bar ``"Running Arnoldi Iteration for step"``.

    Returns
    -------
    (list of tuple of Tensor, Tensor)
        The basis vectors, shaped as ``b``, and the ``(k, k - 1)`` Hessenberg matrix.
    """
    from .tracin import _Progress

    b = tuple(b)
    unflatten = unflatten_params_factory([p.shape for p in b])

    def flat_hvp(v: Tensor) -> Tensor:
        return flatten_params(tuple(hvp(unflatten(v))))

    with _Progress(show_progress, n, "Running Arnoldi Iteration for step") as bar:
        qs, h = arnoldi(flat_hvp, flatten_params(b), n, tol, torch.device(projection_device), bar)
    return [unflatten(q) for q in qs], h


def parameter_distill(
    qs: list[tuple[Tensor, ...]],
    H: Tensor,  # noqa: N803 (Captum's argument name)
    k: int | None,
    hessian_reg: float,
    hessian_inverse_tol: float,
) -> tuple[Tensor, list[tuple[Tensor, ...]]]:
    """Captum's ``_parameter_distill``: :func:`distill` with vectors as tuples of tensors.

    Parameters
    ----------
    qs : list of tuple of Tensor
    H : Tensor
        :func:`parameter_arnoldi`'s output.
    k : int or None
    hessian_reg, hessian_inverse_tol : float

    Returns
    -------
    (Tensor, list of tuple of Tensor)
        Eigenvalues ascending and the eigenvectors, each shaped as the basis vectors.
    """
    if not qs:
        return distill([], H, k, hessian_reg, hessian_inverse_tol)  # raises
    unflatten = unflatten_params_factory([p.shape for p in qs[0]])
    values, vectors = distill(
        [flatten_params(q) for q in qs], H, k, hessian_reg, hessian_inverse_tol
    )
    return values, [unflatten(v) for v in vectors.T]


# -- a model's forward as a function of (some of) its parameters ------------------------------
def functional_call(model: Module, params: Mapping[str, Tensor], features: Any) -> Any:
    """``model(*features)`` with the named parameters replaced by ``params`` (so the
    output is differentiable with respect to them), through ``torch.func``.

    Parameters
    ----------
    model : nn.Module
    params : mapping of str to Tensor
        Parameter (or buffer) names, as ``named_parameters`` spells them, to tensors.
    features : tuple or Tensor
        Unpacked into the forward (a tensor is one argument).

    Returns
    -------
    The model's output.
    """
    args = features if isinstance(features, tuple) else (features,)
    return torch.func.functional_call(model, dict(params), args)


def custom_functional_call(model: Module, params: Mapping[str, Tensor], features: Any) -> Any:
    """:func:`functional_call` without ``torch.func``: the named parameters are swapped
    for plain tensors on their modules for the duration of the forward, then restored.

    Parameters
    ----------
    model : nn.Module
    params : mapping of str to Tensor
    features : tuple or Tensor

    Returns
    -------
    The model's output.
    """
    args = features if isinstance(features, tuple) else (features,)
    # each touched module's parameters and buffers, restored as they were (same objects,
    # same order) whatever the forward does
    saved: dict[int, tuple[Module, dict[str, Any], dict[str, Any]]] = {}
    swapped: list[tuple[Module, str]] = []
    try:
        for name, value in params.items():
            *path, leaf = name.split(".")
            owner = model.get_submodule(".".join(path)) if path else model
            if id(owner) not in saved:
                saved[id(owner)] = (owner, dict(owner._parameters), dict(owner._buffers))
            delattr(owner, leaf)
            setattr(owner, leaf, value)
            swapped.append((owner, leaf))
        return model(*args)
    finally:
        for owner, leaf in swapped:
            owner.__dict__.pop(leaf, None)
        for owner, parameters, buffers in saved.values():
            owner._parameters.clear()
            owner._parameters.update(parameters)
            owner._buffers.clear()
            owner._buffers.update(buffers)
