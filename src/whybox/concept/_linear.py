"""Linear concept classifiers, with or without scikit-learn.

* :func:`sgd_linear_svm` -- scikit-learn's ``SGDClassifier(loss="hinge", penalty="l2",
  learning_rate="optimal")``: scikit-learn's own compiled fit when it is installed (as
  Captum's), else a port of it on dense data, step for step (the per-sample updates, the
  xorshift shuffle, the stopping rule, float32 rounding for float32 data), drawing its seeds
  from numpy's global generator as scikit-learn does: Captum's default CAV classifier, with
  the same numbers under the same seeds;
* :func:`fit_linear_svm` -- the same objective solved to optimality (deterministic).

Both minimise, for each class ``c`` against the rest (``s_i = +1`` for ``c``, else ``-1``)::

    alpha / 2 * ||w||^2 + mean_i max(0, 1 - s_i (w . x_i + b))
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

__all__ = ["sgd_linear_svm", "fit_linear_svm"]

#: scikit-learn's bound for its seeds (``np.iinfo(np.int32).max``)
_MAX_INT = int(np.iinfo(np.int32).max)


def sgd_linear_svm(
    x: Tensor,
    y: Tensor,
    classes: list[int],
    *,
    alpha: float = 0.01,
    max_iter: int = 1000,
    tol: float = 1e-3,
    n_iter_no_change: int = 5,
    random_state: np.random.RandomState | None = None,
    use_sklearn: bool = True,
) -> tuple[Tensor, Tensor]:
    """scikit-learn's ``SGDClassifier`` (hinge, L2, ``"optimal"`` rate).

    With scikit-learn installed (and ``use_sklearn``) its compiled ``SGDClassifier`` runs
    the fit, as Captum's does (tens of times faster than a Python loop); without it, the
    step-for-step port below gives the same numbers (tests/concept compare the two).

    Parameters
    ----------
    x : Tensor ``(n, F)``
    y : Tensor ``(n,)`` of labels
    classes : list of int
        The sorted labels.
    use_sklearn : bool, default True
        Let scikit-learn fit when it is importable (``False``: always the port).
    alpha, max_iter, tol, n_iter_no_change
        ``SGDClassifier``'s (Captum: ``alpha=0.01, max_iter=1000, tol=1e-3``).
    random_state : numpy RandomState, optional
        Where the seeds come from; ``None``: numpy's global generator (the draws
        ``SGDClassifier(random_state=None).fit`` makes, in its order).

    Returns
    -------
    (Tensor ``(K, F)``, Tensor ``(K,)``)
        Weights and intercepts in ``x``'s floating dtype on its device; ``K = 1`` for two
        classes (the classifier of ``classes[1]``), else ``K = len(classes)``.
    """
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float64
    data = x.detach().to(dtype).cpu().numpy()
    labels = y.reshape(-1).cpu().numpy()
    if use_sklearn:
        fitted = _sklearn_sgd(data, labels, alpha, max_iter, tol, n_iter_no_change, random_state)
        if fitted is not None:
            weight, bias = fitted
            return weight.to(dtype).to(x.device), bias.to(dtype).to(x.device)
    draw = np.random.randint if random_state is None else random_state.randint
    if len(classes) == 2:
        fits = [(classes[1], draw)]
    else:
        # one seed per class first, then each class's own generator (scikit-learn's order)
        seeds = draw(_MAX_INT, size=len(classes))
        fits = [(c, np.random.RandomState(s).randint) for c, s in zip(classes, seeds)]
    weights, biases = [], []
    for target, class_draw in fits:
        sign = np.where(labels == target, 1.0, -1.0).astype(data.dtype)
        w, b = _plain_sgd(data, sign, alpha, class_draw, max_iter, tol, n_iter_no_change)
        weights.append(torch.from_numpy(w))
        biases.append(b)
    weight = torch.stack(weights).to(x.device)
    return weight, torch.tensor(biases, dtype=torch.float64).to(dtype).to(x.device)


def _sklearn_sgd(
    data: np.ndarray,
    labels: np.ndarray,
    alpha: float,
    max_iter: int,
    tol: float,
    n_iter_no_change: int,
    random_state: np.random.RandomState | None,
) -> tuple[Tensor, Tensor] | None:
    """scikit-learn's own fit (``None`` when scikit-learn is not installed).

    ``random_state=None`` makes it draw its seeds from numpy's global generator, as the
    port and Captum do; one job (no worker processes) keeps the one-vs-rest fits in order.
    """
    try:
        from sklearn.linear_model import SGDClassifier
    except ImportError:
        return None
    classifier = SGDClassifier(
        alpha=alpha,
        max_iter=max_iter,
        tol=tol,
        n_iter_no_change=n_iter_no_change,
        random_state=random_state,
    )
    classifier.fit(data, labels)
    weight = torch.from_numpy(np.ascontiguousarray(classifier.coef_))
    bias = torch.from_numpy(np.ascontiguousarray(classifier.intercept_, dtype=np.float64))
    return weight, bias


def _plain_sgd(
    x: np.ndarray,
    sign: np.ndarray,
    alpha: float,
    draw: Callable[..., int],
    max_iter: int,
    tol: float,
    n_iter_no_change: int,
) -> tuple[np.ndarray, float]:
    """One binary hinge SGD fit, in scikit-learn's order of operations.

    The weights are ``wscale * w`` (scaling is O(1)); the margin's products are rounded in
    the data's dtype and summed in float64, scalars are float64, and the scale, the update
    step and the weights are rounded to the data's dtype where scikit-learn's float32 code
    rounds them.
    """
    real = x.dtype.type
    f64 = np.float64
    n, n_features = x.shape
    draw(1, _MAX_INT)  # the dataset's own seed (scikit-learn draws it; shuffling does not use it)
    seed = int(draw(_MAX_INT))
    rows = list(x)
    rows64 = [row.astype(f64) for row in rows]
    signs = [float(s) for s in sign]
    w = np.zeros(n_features, dtype=x.dtype)
    wscale = real(1.0)
    sq_norm = 0.0
    intercept = 0.0
    reset_below = 1e-6 if x.dtype == np.float32 else 1e-9
    # "optimal" learning rate: eta = 1 / (alpha (t0 + t)), t0 so the first step is typw
    typw = math.sqrt(1.0 / math.sqrt(alpha))
    optimal_init = 1.0 / (typw * alpha)
    t = 1.0
    order = list(range(n))
    best = math.inf
    stalled = 0
    for _epoch in range(max_iter):
        objective = 0.0
        _shuffle(order, seed)
        for k in order:
            s_k = signs[k]
            p = float(real((w * rows[k]).sum(dtype=f64) * f64(wscale))) + intercept
            eta = 1.0 / (alpha * (optimal_init + t - 1.0))
            z = p * s_k
            norm = float(real(math.sqrt(sq_norm)))
            objective += (1.0 - z if z <= 1.0 else 0.0) + alpha * 0.5 * norm**2
            update = eta * s_k if z <= 1.0 else 0.0
            decay = real(max(0.0, 1.0 - eta * alpha))
            wscale = real(wscale * decay)
            sq_norm *= float(real(decay * decay))
            if wscale < reset_below:
                w = (w * wscale).astype(x.dtype)
                wscale = real(1.0)
            if update != 0.0:
                np.add(w, rows64[k] * f64(real(real(update) / wscale)), out=w, casting="unsafe")
                sq_norm = float((w * w).sum(dtype=f64)) * float(real(wscale * wscale))
                intercept += update
            t += 1.0
        if not (math.isfinite(intercept) and np.isfinite(w).all()):
            raise ValueError(
                "Floating-point under-/overflow while fitting the concept classifier: scale "
                "the activations (or use DefaultClassifier(solver='exact'))."
            )
        mean_objective = objective / n
        stalled = stalled + 1 if mean_objective > best - tol else 0
        best = min(best, mean_objective)
        if stalled >= n_iter_no_change:
            break
    return (w * wscale).astype(x.dtype), intercept


def _shuffle(order: list[int], seed: int) -> None:
    """scikit-learn's in-place Fisher-Yates shuffle with its 32-bit xorshift generator,
    restarted from ``seed`` every epoch (so epochs apply the same permutation again)."""
    state = seed & 0xFFFFFFFF
    n = len(order)
    for i in range(n - 1):
        if state == 0:
            state = 1
        state ^= (state << 13) & 0xFFFFFFFF
        state ^= state >> 17
        state ^= (state << 5) & 0xFFFFFFFF
        j = i + (state % 2147483648) % (n - i)
        order[i], order[j] = order[j], order[i]


def fit_linear_svm(
    x: Tensor, y: Tensor, classes: list[int], *, alpha: float = 0.01, gap_tol: float = 1e-6
) -> tuple[Tensor, Tensor]:
    """Linear SVM by scikit-learn's ``SGDClassifier`` objective, solved to optimality.

    For each class ``c`` (one only, for the second class, when there are two) with
    ``s_i = +1`` for examples of ``c`` and ``-1`` otherwise, minimise::

        alpha / 2 * ||w||^2 + mean_i max(0, 1 - s_i (w . x_i + b))

    through its dual (a box-constrained QP with one equality, for the unpenalised
    intercept) by accelerated projected gradient until the duality gap is below
    ``gap_tol`` (relative); the intercept is then the exact minimiser given ``w``.

    Parameters
    ----------
    x : Tensor ``(n, F)``
    y : Tensor ``(n,)`` of labels
    classes : list of int
        The sorted labels.
    alpha : float
    gap_tol : float

    Returns
    -------
    (Tensor ``(K, F)``, Tensor ``(K,)``)
        Weights and intercepts in ``x``'s floating dtype and device; ``K = 1`` for two
        classes (the classifier of ``classes[1]``), else ``K = len(classes)``.
    """
    dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    x64 = x.to(torch.float64)
    n = x64.shape[0]
    # the Gram matrix is the one O(n^2 F) step: on x's device; the n-sized dual on the host
    gram = (x64 @ x64.T).cpu().numpy()
    targets = classes[1:] if len(classes) == 2 else classes
    labels = y.reshape(-1).cpu().numpy()
    weights, biases = [], []
    for target in targets:
        sign = np.where(labels == target, 1.0, -1.0)
        a = _svm_dual(gram, sign, 1.0 / (alpha * n), gap_tol)
        coef = torch.from_numpy(a * sign).to(x64.device)
        weights.append(coef @ x64)
        # w . x_i from the Gram matrix (no second pass over x)
        biases.append(_best_intercept(gram @ (a * sign), sign))
    bias = torch.tensor(biases, dtype=torch.float64, device=x64.device)
    return torch.stack(weights).to(dtype), bias.to(dtype)


def _svm_dual(
    gram: np.ndarray, sign: np.ndarray, c: float, gap_tol: float, max_iter: int = 50000
) -> np.ndarray:
    """``argmax_a sum(a) - a^T Q a / 2`` over ``0 <= a <= c``, ``sign . a = 0``, with
    ``Q = diag(sign) gram diag(sign)``: FISTA with adaptive restart, stopped on the duality
    gap. In numpy: thousands of tiny steps, where per-op overhead decides the time."""
    q = sign[:, None] * gram * sign[None, :]
    lipschitz = _largest_eigenvalue(q)
    a = np.zeros_like(sign)
    z, t, tau = a.copy(), 1.0, 0.0
    for step in range(max_iter):
        grad = q @ z - 1.0
        a_next, tau = _project(z - grad / lipschitz, sign, c, tau)
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        if grad @ (a_next - a) > 0:  # restart when momentum points uphill
            z, t_next = a_next.copy(), 1.0
        else:
            z = a_next + ((t - 1.0) / t_next) * (a_next - a)
        a, t = a_next, t_next
        if step % 10 == 9:
            qa = q @ a
            norm2 = float(a @ qa)
            margins = sign * qa
            b = _best_intercept(margins, sign)
            primal = 0.5 * norm2 + c * float(np.maximum(1.0 - sign * (margins + b), 0.0).sum())
            dual = float(a.sum()) - 0.5 * norm2
            if primal - dual <= gap_tol * max(1.0, abs(primal)):
                break
    return a


def _largest_eigenvalue(q: np.ndarray, iterations: int = 200) -> float:
    """The largest eigenvalue of the PSD ``q`` by power iteration, with a 5% margin (the
    step ``1 / L`` must not exceed ``1 / lambda_max``)."""
    # a fixed pseudo-random start: never orthogonal to the top eigenvector in practice
    v = np.random.default_rng(0).uniform(-0.5, 0.5, q.shape[0])
    v /= max(np.linalg.norm(v), 1e-300)
    estimate = norm = 0.0
    for _ in range(iterations):
        w = q @ v
        norm = float(np.linalg.norm(w))
        if norm == 0.0:
            return 1e-12
        v = w / norm
        if abs(norm - estimate) <= 1e-6 * norm:
            break
        estimate = norm
    return 1.05 * max(norm, 1e-12)


def _project(v: np.ndarray, sign: np.ndarray, c: float, tau: float) -> tuple[np.ndarray, float]:
    """Euclidean projection onto ``{0 <= a <= c, sign . a = 0}``: ``clip(v - tau sign, 0,
    c)`` for the root ``tau`` of the non-increasing piecewise-linear ``g(tau) = sign .
    clip(...)``; Newton steps on the current linear piece, bisection as a safeguard,
    warm-started at the previous root."""
    lo = hi = None
    scale = float(np.abs(v).max()) + c + 1.0
    tolerance = 1e-12 * (1.0 + c * len(v))
    for _ in range(200):
        u = v - tau * sign
        a = np.clip(u, 0.0, c)
        g = float(sign @ a)
        if abs(g) <= tolerance:
            break
        if g > 0:
            lo = tau
        else:
            hi = tau
        n_free = int(np.count_nonzero((u > 0) & (u < c)))
        nxt = tau + g / n_free if n_free else None  # g has slope -n_free on this piece
        if nxt is None or (lo is not None and nxt <= lo) or (hi is not None and nxt >= hi):
            if lo is None:
                nxt = tau - 2.0 * scale
            elif hi is None:
                nxt = tau + 2.0 * scale
            else:
                nxt = 0.5 * (lo + hi)
        tau = nxt
    return a, tau


def _best_intercept(margins: np.ndarray, sign: np.ndarray) -> float:
    """The ``b`` minimising ``sum_i max(0, 1 - s_i (m_i + b))``: a convex piecewise-linear
    function whose slope ``-#{s=+1 active} + #{s=-1 active}`` is scanned at its
    breakpoints (sorted, ``O(n log n)``)."""
    positive = sign > 0
    pos = np.sort(1.0 - margins[positive])
    neg = np.sort(-1.0 - margins[~positive])
    points = np.sort(np.concatenate([pos, neg]))
    # right derivative at each breakpoint; the first one >= 0 is a minimiser
    slope = np.searchsorted(neg, points, side="right") - (
        len(pos) - np.searchsorted(pos, points, side="right")
    )
    rising = np.flatnonzero(slope >= 0)
    return float(points[rising[0] if len(rising) else len(points) - 1])
