"""Time whybox.metrics against Quantus 0.6, Captum 0.9 and the floor of model calls.

    .venv/bin/python benchmarks/metrics.py            # full run (a few minutes, 1 thread)
    .venv/bin/python benchmarks/metrics.py --quick    # smoke run (< 1 min)
    .venv/bin/python benchmarks/metrics.py --only random_logit --only deletion  # some cases

The reference is real Quantus 0.6 (``pip install whybox[bench]``): each case calls the
Quantus metric on the same model (a torch module, which Quantus wraps itself), the same
numpy inputs (``channel_first=True``), the same attributions as ``a_batch`` (its
normalisation and ``abs`` switched off unless the metric's definition needs them), logits
(``softmax=False``) and ``disable_warnings=True``. Where a metric re-explains, both sides
use whybox's Saliency (Quantus through ``explain_func``), so the explanation cost is alike.
Where both define the same number, ``max |diff|`` compares them; where the draws differ
(Quantus draws from numpy's global generator) or the conventions differ, the note says
how. Captum's two metrics (``infidelity``, ``sensitivity_max``) are timed against Captum
0.9 itself, on the same seeded draws, so ``max |diff|`` is exact there. When Quantus is not
importable, the cases that have one fall back to a numpy re-statement of Quantus' loop
(marked "numpy loop" in the table).

``floor``: the very rows whybox evaluates, prebuilt, through the bare model at its best
chunk size (forward only; forward + backward where the metric re-explains). ROAD's floor
leaves the imputation out (a sparse linear solve per row, which both libraries must do),
so its ratio is the imputation's cost. Goals: >= 5x faster than Quantus, <= 1.2x the floor.
``reference / floor`` is the most a whybox running at its floor could gain over the
reference: Quantus 0.6 batches one model call per curve step (or per sample) over the
whole batch, so where its model work is the floor's (deletion, faithfulness correlation,
completeness, non-sensitivity) the column bounds ``reference / whybox`` well below 5x.
The re-explaining metrics give both sides the explanation of the unperturbed inputs
(Quantus' ``a_batch``, whybox's ``attributions=``), so neither explains it again (Quantus'
MPRT still does, once). Torch runs on one thread; times are CPU seconds (medians of
interleaved rounds, see ``_harness.py``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

import whybox
import whybox.metrics as WM
from _harness import configure_threads, interleaved_times, seed_all, set_clock
from models import LargeCNN, SmallCNN, TabularMLP

LOOP_GOAL = 5.0
FLOOR_GOAL = 1.2


# -- numpy re-statements of Quantus' loops (the fallback) ----------------------------------------------------------------
def predict(model: torch.nn.Module, x: np.ndarray, target: int) -> float:
    """Quantus' ``model.predict`` of one image: numpy in, one forward, numpy out."""
    with torch.no_grad():
        return float(model(torch.from_numpy(x[None])).reshape(1, -1)[0, target])


def loop_deletion(model, x: np.ndarray, a: np.ndarray, y: np.ndarray, n_steps: int) -> np.ndarray:
    curves = []
    for xi, ai, yi in zip(x, a, y):
        order = np.argsort(-ai.sum(0).reshape(-1), kind="stable")
        n = order.size
        curve = []
        for step in range(n_steps + 1):
            flat = xi.reshape(xi.shape[0], -1).copy()
            flat[:, order[: round(step / n_steps * n)]] = 0.0
            curve.append(predict(model, flat.reshape(xi.shape), int(yi)))
        curves.append(curve)
    return np.asarray(curves)


def loop_faithfulness_correlation(model, x, a, y, subsets: np.ndarray) -> np.ndarray:
    scores = []
    for i, (xi, ai, yi) in enumerate(zip(x, a, y)):
        pixel_scores = ai.sum(0).reshape(-1)
        original = predict(model, xi, int(yi))
        sums, drops = [], []
        for chosen in subsets[i]:
            flat = xi.reshape(xi.shape[0], -1).copy()
            flat[:, chosen] = 0.0
            drops.append(original - predict(model, flat.reshape(xi.shape), int(yi)))
            sums.append(pixel_scores[chosen].sum())
        scores.append(np.corrcoef(sums, drops)[0, 1])
    return np.asarray(scores)


_NEIGHBOURS = [
    (di, dj, 1 / 12 if di and dj else 1 / 6) for di in (-1, 0, 1) for dj in (-1, 0, 1) if di or dj
]


def numpy_impute(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Rong et al.'s noisy linear imputation as ROAD / Quantus build it (noise 0): one sparse
    system per image over the removed pixels, solved by scipy."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    c, h, w = image.shape
    unknown = np.flatnonzero(removed.reshape(-1))
    if unknown.size == 0:
        return image
    position = -np.ones(h * w, dtype=np.int64)
    position[unknown] = np.arange(unknown.size)
    rows, cols, values = [], [], []
    rhs = np.zeros((unknown.size, c))
    flat = image.reshape(c, -1)
    for k, p in enumerate(unknown):
        i, j = divmod(int(p), w)
        degree = 0.0
        for di, dj, weight in _NEIGHBOURS:
            ni, nj = i + di, j + dj
            if not (0 <= ni < h and 0 <= nj < w):
                continue
            degree += weight
            q = ni * w + nj
            if position[q] >= 0:
                rows.append(k), cols.append(position[q]), values.append(-weight)
            else:
                rhs[k] += weight * flat[:, q]
        rows.append(k), cols.append(k), values.append(degree)
    system = coo_matrix((values, (rows, cols)), shape=(unknown.size, unknown.size)).tocsc()
    solved = spsolve(system, rhs).reshape(unknown.size, c)
    out = flat.copy()
    out[:, unknown] = solved.T
    return out.reshape(c, h, w)


def loop_road(model, x, a, y, n_steps: int) -> np.ndarray:
    curves = []
    for xi, ai, yi in zip(x, a, y):
        order = np.argsort(-ai.sum(0).reshape(-1), kind="stable")
        curve = []
        for step in range(n_steps + 1):
            removed = np.zeros(order.size, dtype=bool)
            removed[order[: round(step / n_steps * order.size)]] = True
            imputed = numpy_impute(xi, removed.reshape(xi.shape[1:])).astype(np.float32)
            curve.append(predict(model, imputed, int(yi)))
        curves.append(curve)
    return np.asarray(curves)


def loop_max_sensitivity(
    model, x: np.ndarray, y: np.ndarray, noise: np.ndarray, attributions: np.ndarray | None = None
) -> np.ndarray:
    def explain(batch: np.ndarray) -> np.ndarray:
        e = whybox.explain(
            model, torch.from_numpy(batch), method="saliency", target=torch.from_numpy(y), abs=False
        )
        return e.attributions.numpy()

    base = explain(x) if attributions is None else attributions
    base_norm = np.linalg.norm(base.reshape(len(x), -1), axis=1)
    best = np.zeros(len(x))
    for sample in noise:  # Quantus 0.6: one batch per sample
        changed = explain((x + sample).astype(np.float32)) - base
        ratio = np.linalg.norm(changed.reshape(len(x), -1), axis=1) / base_norm
        best = np.maximum(best, ratio)
    return best


def loop_sparseness(a: np.ndarray) -> np.ndarray:
    out = []
    for ai in a:
        values = np.sort(np.abs(ai.reshape(-1)))
        n = values.size
        index = np.arange(1, n + 1)
        out.append(((2 * index - n - 1) * values).sum() / (n * values.sum()))
    return np.asarray(out)


# -- floors ----------------------------------------------------------------------------------
class forward_floor:  # noqa: N801 (used like a function)
    """Best-chunk forward of prebuilt rows (no grad); the chunk is chosen when a case that
    is run first asks for it (``resolve``), so ``--only`` skips the others' probes."""

    def __init__(self, model, rows: Tensor, target: Tensor) -> None:
        self.model, self.rows, self.target = model, rows, target

    def resolve(self) -> Callable[[], Any]:
        model, rows, target = self.model, self.rows, self.target
        chunks = [c for c in (64, 256, 1024, rows.shape[0]) if c <= rows.shape[0]]
        chunks = chunks or [rows.shape[0]]
        best, best_t = chunks[0], float("inf")
        for c in chunks:
            times, _ = interleaved_times(
                {"c": lambda c=c: _forward(model, rows, target, c)},
                repeats=3,
                min_repeats=3,
                budget_s=1.0,
                device="cpu",
            )
            t = statistics.median(times["c"])
            if t < best_t:
                best, best_t = c, t
        return lambda: _forward(model, rows, target, best)


def _forward(model, rows: Tensor, target: Tensor, chunk: int) -> Tensor:
    with torch.no_grad():
        parts = [
            model(rows[s : s + chunk]).gather(1, target[s : s + chunk, None])
            for s in range(0, rows.shape[0], chunk)
        ]
    return torch.cat(parts)


def saliency_floor(model, rows: Tensor, target: Tensor) -> Callable[[], Any]:
    def run() -> Tensor:
        leaf = rows.detach().requires_grad_(True)
        out = model(leaf).gather(1, target[:, None]).sum()
        return torch.autograd.grad(out, leaf)[0]

    return run


def randomised_floor(model, rows: Tensor, target: Tensor) -> Callable[[], Any]:
    """The model work of a cascading randomisation check given the original maps: one
    Saliency pass of ``rows`` through each cascading copy (prebuilt; no copy, no ranks)."""
    import copy

    models = []
    randomised = copy.deepcopy(model)
    for name in WM.randomisable_layers(model):
        for p in randomised.get_submodule(name).parameters(recurse=False):
            torch.nn.init.normal_(p.data, std=0.05)
        models.append(copy.deepcopy(randomised))
    passes = [saliency_floor(m, rows, target) for m in models]
    return lambda: [run() for run in passes]


# -- Quantus 0.6 ------------------------------------------------------------------------------
def load_quantus() -> Any:
    """The ``quantus`` module, or ``None`` when it is not importable."""
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import quantus
    except Exception:  # not installed, or broken beside this torch
        return None
    return quantus


def quantus_explain(model, inputs, targets, **kwargs) -> np.ndarray:
    """Quantus ``explain_func``: whybox's Saliency (signed), numpy in and out."""
    x = torch.as_tensor(np.asarray(inputs, dtype=np.float32))
    t = torch.as_tensor(np.asarray(targets)).long()
    e = whybox.explain(model, x, method="saliency", target=t, abs=False)
    return e.attributions.numpy()


def q_call(metric: Any, model, x, y, a=None, s=None, **kwargs) -> np.ndarray:
    """One Quantus evaluation on numpy data (logits, channel first, on the CPU)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = metric(
            model=model,
            x_batch=x,
            y_batch=y,
            a_batch=a,
            s_batch=s,
            channel_first=True,
            softmax=False,
            device="cpu",
            **kwargs,
        )
    if isinstance(out, dict):  # per layer (MPRT) or per percentage (ROAD)
        out = [np.asarray(v, dtype=np.float64) for v in out.values()]
    return np.asarray(out, dtype=np.float64)


def max_diff(ours: Any, theirs: Any) -> float:
    ours = ours.detach().double().numpy() if isinstance(ours, Tensor) else np.asarray(ours)
    theirs = np.asarray(theirs, dtype=np.float64)
    return float(np.abs(ours.reshape(theirs.shape) - theirs).max())


NO_DIFF = lambda o, r: float("nan")  # noqa: E731


# -- the cases -------------------------------------------------------------------------------
def run(quick: bool, only: list[str] | None = None) -> list[dict[str, Any]]:
    seed_all(0)
    quantus = load_quantus()
    ref_name = "quantus" if quantus is not None else "numpy loop"
    model = SmallCNN().eval()
    n = 4 if quick else 8
    x = torch.rand(n, 3, 32, 32)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    a = whybox.explain(model, x, method="input_x_gradient", target=y).attributions
    pixels = torch.arange(32 * 32).view(1, 1, 32, 32)
    xn, an, yn = x.numpy(), a.numpy(), y.numpy()
    results = []

    def wanted(name: str) -> bool:
        return not only or any(part in name for part in only)

    def case(name, ours, ref, floor, compare, note="", reference=None):
        if not wanted(name):
            return
        calls = {"whybox": ours}
        if ref is not None:
            calls["ref"] = ref
        if floor is not None:
            calls["floor"] = floor.resolve() if isinstance(floor, forward_floor) else floor
        times, outputs = interleaved_times(
            calls,
            repeats=3 if quick else 5,
            min_repeats=3 if not quick else 2,
            budget_s=3 if quick else 20,
            device="cpu",
        )
        med = {k: statistics.median(v) for k, v in times.items()}
        diff = compare(outputs["whybox"], outputs["ref"]) if ref is not None else float("nan")
        results.append(
            {
                "case": name,
                "reference": reference or ref_name,
                **med,
                "diff": diff,
                "note": note,
            }
        )
        print(
            f"{name:28s} whybox {med['whybox']:.4f}s  ref {med.get('ref', float('nan')):.4f}s  "
            f"floor {med.get('floor', float('nan')):.4f}s  max|diff| {diff:.2e}",
            flush=True,
        )

    # -- faithfulness: pixel flipping (elements, cumulative, baseline 0) -------------------
    steps = 24 if quick else 48  # Quantus: the step must divide H * W
    per_step = 3 * 32 * 32 // steps
    rows = _deletion_rows(x, a, steps, by_pixel=False)
    if quantus is not None:
        flip = quantus.PixelFlipping(
            features_in_step=per_step,
            perturb_baseline=0.0,
            normalise=False,
            abs=False,
            disable_warnings=True,
        )
        ref = lambda: q_call(flip, model, xn, yn, an, batch_size=n)  # noqa: E731
    else:
        ref = lambda: loop_deletion(model, xn, an, yn, steps)[:, 1:]  # noqa: E731
    case(
        "deletion (PixelFlipping)",
        lambda: WM.deletion(model, x, a, target=y, n_steps=steps).curve[:, 1:],
        ref,
        forward_floor(model, rows, y.repeat_interleave(steps + 1)),
        max_diff,
        f"{steps} steps of {per_step} elements; Quantus' curve has no unperturbed point",
    )

    # -- faithfulness correlation ----------------------------------------------------------
    n_subsets, size = (10 if quick else 50), 64
    generator = np.random.default_rng(0)
    subsets = np.stack(
        [[generator.choice(1024, size, replace=False) for _ in range(n_subsets)] for _ in range(n)]
    )
    a_pix = a.sum(1, keepdim=True)
    if quantus is not None:
        fc = quantus.FaithfulnessCorrelation(
            nr_runs=n_subsets,
            subset_size=size,
            perturb_baseline=0.0,
            similarity_func=quantus.similarity_func.correlation_pearson,
            normalise=False,
            abs=False,
            disable_warnings=True,
        )
        ref = lambda: q_call(fc, model, xn, yn, a_pix.numpy(), batch_size=n)  # noqa: E731
    else:
        ref = lambda: loop_faithfulness_correlation(model, xn, an, yn, subsets)  # noqa: E731
    case(
        "faithfulness_correlation",
        lambda: (
            WM.faithfulness_correlation(
                model,
                x,
                a,
                target=y,
                feature_mask=pixels,
                subset_size=size,
                n_samples=n_subsets,
                seed=0,
            ).score
        ),
        ref,
        forward_floor(model, torch.cat([x, _subset_rows(x, subsets)]), y.repeat(n_subsets + 1)),
        NO_DIFF,
        f"{n_subsets} subsets of {size} pixels; the subsets are different draws (each side "
        "seeded), the numbers are checked in tests; floor: the subset rows and the "
        "unperturbed ones",
    )

    # -- ROAD (noise 0, accuracy) ----------------------------------------------------------
    def road_case(name, net, xr, ar, yr, road_steps, note):
        pct = [100 * k / road_steps for k in range(1, road_steps)]  # whole pixel counts
        xrn, arn, yrn = xr.numpy(), ar.sum(1, keepdim=True).numpy(), yr.numpy()
        if quantus is not None:
            from quantus.functions.perturb_func import noisy_linear_imputation

            def ref():
                # Quantus' ROAD.evaluate_batch with pixel ranks: its metric class ranks the
                # broadcast C*H*W attributions and indexes H*W pixels with them, which fails
                # on 3-channel images (IndexError), so its loop runs here with its imputation
                order = np.argsort(-arn.reshape(len(arn), -1), axis=1)
                scores = []
                for p in pct:
                    top = order[:, : int(order.shape[1] * p / 100)]
                    perturbed = np.stack(
                        [
                            noisy_linear_imputation(arr=xe, indices=t, noise=0.0)
                            for xe, t in zip(xrn, top)
                        ]
                    ).astype(np.float32)
                    with torch.no_grad():
                        predicted = net(torch.from_numpy(perturbed)).argmax(dim=1).numpy()
                    scores.append((predicted == yrn).mean())
                return np.asarray(scores)

        else:

            def ref():
                return loop_road(net, xrn, ar.numpy(), yrn, road_steps)[:, 1:-1]

        def ours():
            if quantus is None:  # the numpy loop records outputs
                return WM.road(net, xr, ar, target=yr, n_steps=road_steps, noise_std=0.0).curve[
                    :, 1:-1
                ]
            result = WM.road(
                net, xr, ar, target=yr, n_steps=road_steps, noise_std=0.0, measure="accuracy"
            )
            return result.curve[:, 1:-1].mean(0)

        case(
            name,
            ours,
            ref,
            forward_floor(
                net, _deletion_rows(xr, ar, road_steps), yr.repeat_interleave(road_steps + 1)
            ),
            max_diff,
            note,
        )

    road_n, road_steps = (2, 4) if quick else (4, 8)
    road_case(
        "road",
        model,
        x[:road_n],
        a[:road_n],
        y[:road_n],
        road_steps,
        f"{road_n} images, {road_steps - 1} percentages, accuracy averaged over images; "
        "Quantus' ROAD loop with its imputation (its class fails on 3 channels); "
        "floor: model calls only (imputation excluded)",
    )

    # -- robustness (re-explaining; different draws) ----------------------------------------
    # the unperturbed maps (signed Saliency, what both sides re-explain with) are given to
    # both, as Quantus' a_batch and whybox's attributions: each explains samples x N rows
    sal = whybox.explain(model, x, method="saliency", target=y, abs=False).attributions
    saln = sal.numpy()
    samples = 4 if quick else 10
    sal_floor = saliency_floor(model, x.repeat(samples, 1, 1, 1), y.repeat(samples))
    noise = (
        np.random.default_rng(1)
        .uniform(-0.02, 0.02, (samples,) + tuple(x.shape))
        .astype(np.float32)
    )
    robust = [
        ("max_sensitivity", WM.max_sensitivity, "MaxSensitivity", {"lower_bound": 0.02}),
        ("avg_sensitivity", WM.avg_sensitivity, "AvgSensitivity", {"lower_bound": 0.02}),
        ("local_lipschitz", WM.local_lipschitz, "LocalLipschitzEstimate", {"perturb_std": 0.1}),
    ]
    for name, fn, qname, qkw in robust:
        extra = {"radius": 0.02} if name != "local_lipschitz" else {"radius": 0.1}
        if quantus is not None:
            metric = getattr(quantus, qname)(
                nr_samples=samples, normalise=False, abs=False, disable_warnings=True, **qkw
            )
            ref = lambda metric=metric: q_call(  # noqa: E731
                metric, model, xn, yn, saln, explain_func=quantus_explain, batch_size=n
            )
        elif name == "max_sensitivity":
            ref = lambda: loop_max_sensitivity(model, xn, yn, noise, saln)  # noqa: E731
        else:
            ref = None
        case(
            name,
            lambda fn=fn, extra=extra: (
                fn(
                    model,
                    x,
                    target=y,
                    explain_options={"abs": False},
                    attributions=sal,
                    n_samples=samples,
                    seed=0,
                    **extra,
                ).score
            ),
            ref,
            sal_floor,
            NO_DIFF,
            f"{samples} samples; different draws (numpy's global generator in Quantus); "
            "both given the unperturbed Saliency maps; Quantus explains one batch per sample; "
            f"floor: Saliency of {samples} x {n} rows",
        )

    # -- Captum's own metrics: infidelity and sensitivity_max, the same numbers ------------
    captum_cases(case, wanted, model, x, y, sal, samples, quick)

    # -- tabular MLP: deletion of single features ------------------------------------------
    tab = TabularMLP().eval()
    xt = torch.randn(64 if quick else 256, 12)
    with torch.no_grad():
        yt = tab(xt).argmax(dim=1)
    at = whybox.explain(tab, xt, method="input_x_gradient", target=yt).attributions
    if quantus is not None:
        flip_t = quantus.PixelFlipping(
            features_in_step=1,
            perturb_baseline=0.0,
            normalise=False,
            abs=False,
            disable_warnings=True,
        )
        xtn = xt.numpy()[:, None, :]
        flat_tab = torch.nn.Sequential(torch.nn.Flatten(), tab).eval()  # Quantus: (N, 1, 12)
        ref = lambda: q_call(  # noqa: E731
            flip_t, flat_tab, xtn, yt.numpy(), at.numpy()[:, None, :], batch_size=len(xtn)
        )
    else:

        def ref():
            xt3, at3 = xt.numpy()[:, None], at.numpy()[:, None]
            return loop_deletion(tab, xt3, at3, yt.numpy(), 12)[:, 1:]

    case(
        "deletion (tabular MLP)",
        lambda: WM.deletion(tab, xt, at, target=yt, n_steps=12).curve[:, 1:],
        ref,
        forward_floor(
            tab,
            _deletion_rows(xt[:, None], at[:, None], 12, by_pixel=False)[:, 0],
            yt.repeat_interleave(13),
        ),
        max_diff,
        f"{len(xt)} rows of 12 features, one feature per step",
    )

    # -- ROAD at 224 px -------------------------------------------------------------------
    if not quick and wanted("road (224"):
        big = LargeCNN().eval()
        xb = torch.rand(2, 3, 224, 224)
        with torch.no_grad():
            yb = big(xb).argmax(dim=1)
        ab = whybox.explain(big, xb, method="input_x_gradient", target=yb).attributions
        road_case(
            "road (224x224, LargeCNN)",
            big,
            xb,
            ab,
            yb,
            8,
            "2 images, 7 percentages; as road; floor: model calls only (imputation excluded)",
        )

    # -- completeness and non-sensitivity -------------------------------------------------
    base_floor = forward_floor(model, torch.cat([x, torch.zeros_like(x)]), y.repeat(2))
    if quantus is not None:
        comp = quantus.Completeness(
            perturb_baseline=0.0, normalise=False, abs=False, disable_warnings=True
        )
        ref = lambda: q_call(comp, model, xn, yn, an, batch_size=n)  # noqa: E731
    else:
        ref = None
    case(
        "completeness",
        lambda: WM.completeness(model, x, a, target=y),
        ref,
        base_floor,
        NO_DIFF,
        "Quantus returns whether sum(a) == f(x) - f(0) exactly (a bool), whybox the gap",
    )
    ns = 1 if quick else 2  # one removal per element: 3072 rows per image
    if quantus is not None:
        # features_in_step > 1 fails in Quantus 0.6 (it XORs (N, steps) with (N, features))
        nonsens = quantus.NonSensitivity(
            features_in_step=1,
            perturb_baseline=0.0,
            normalise=False,
            abs=False,
            disable_warnings=True,
        )
        ref = lambda: q_call(nonsens, model, xn[:ns], yn[:ns], an[:ns], batch_size=ns)  # noqa: E731
    else:
        ref = None
    case(
        "non_sensitivity",
        lambda: WM.non_sensitivity(model, x[:ns], a[:ns], target=y[:ns]).violations,
        ref,
        forward_floor(model, x[:ns].repeat_interleave(3072, dim=0), y[:ns].repeat_interleave(3072)),
        NO_DIFF,
        f"{ns} image(s), every element removed once (baseline 0); the counts differ by "
        "convention (Quantus XORs signed a < eps with |f(x) - f(x')| < eps over elements)",
    )

    # -- randomisation (re-explaining; different weights drawn) ----------------------------
    layers = len(WM.randomisable_layers(model))
    if quantus is not None:
        mprt = quantus.MPRT(
            layer_order="top_down", normalise=False, abs=True, disable_warnings=True, seed=0
        )
        ref = lambda: q_call(  # noqa: E731
            mprt, model, xn, yn, saln, explain_func=quantus_explain, batch_size=n
        )
    else:
        ref = None
    case(
        "model_parameter_randomisation",
        lambda: (
            WM.model_parameter_randomisation(
                model, x, target=y, explain_options={"abs": False}, attributions=sal
            ).similarity
        ),
        ref,
        randomised_floor(model, x, y),
        NO_DIFF,
        f"cascading, {layers} layers, Spearman; the random weights are different draws; "
        "both given the original Saliency maps (Quantus still explains the original model "
        f"once more); floor: {layers} Saliency passes of {n} rows, one per randomised model",
    )
    if quantus is not None:
        rl = quantus.RandomLogit(
            num_classes=10, seed=0, normalise=False, abs=True, disable_warnings=True
        )
        ref = lambda: q_call(  # noqa: E731
            rl, model, xn, yn, saln, explain_func=quantus_explain, batch_size=n
        )
    else:
        ref = None
    case(
        "random_logit",
        lambda: (
            WM.random_logit(
                model, x, target=y, n_classes=10, explain_options={"abs": False}, attributions=sal
            ).similarity
        ),
        ref,
        saliency_floor(model, x, y),
        NO_DIFF,
        "SSIM in Quantus, rank correlation in whybox; the random classes are different draws; "
        f"both given the target's Saliency maps; floor: Saliency of the {n} other-class rows",
    )

    # -- complexity and localisation (no model calls) --------------------------------------
    maps = torch.randn(64 if quick else 256, 3, 32, 32)
    mapsn = maps.numpy()
    dummy_x = np.zeros_like(mapsn)
    dummy_y = np.zeros(len(mapsn), dtype=np.int64)
    if quantus is not None:
        sp = quantus.Sparseness(normalise=False, abs=True, disable_warnings=True)
        ref = lambda: q_call(sp, None, dummy_x, dummy_y, mapsn, batch_size=len(mapsn))  # noqa: E731
    else:
        ref = lambda: loop_sparseness(mapsn)  # noqa: E731
    case(
        "sparseness",
        lambda: WM.sparseness(maps),
        ref,
        None,
        max_diff,
        "Quantus adds 1e-7 to |a| before the Gini index",
    )
    if quantus is not None:
        cx = quantus.Complexity(normalise=False, abs=True, disable_warnings=True)
        case(
            "entropy (Complexity)",
            lambda: WM.entropy(maps),
            lambda: q_call(cx, None, dummy_x, dummy_y, mapsn, batch_size=len(mapsn)),
            None,
            max_diff,
            "",
        )

    heat = maps.abs().sum(1, keepdim=True)
    masks = torch.zeros_like(heat, dtype=torch.bool)
    for i in range(len(masks)):
        r0, c0 = (7 * i) % 20, (11 * i) % 20
        masks[i, 0, r0 : r0 + 12, c0 : c0 + 12] = True
    heatn, masksn = heat.numpy(), masks.numpy().astype(np.float32)
    dx1 = np.zeros_like(heatn)
    localisation = [
        ("pointing_game", lambda: WM.pointing_game(heat, masks).float(), "PointingGame", {}),
        ("relevance_mass", lambda: WM.relevance_mass(heat, masks), "RelevanceMassAccuracy", {}),
        ("relevance_rank", lambda: WM.relevance_rank(heat, masks), "RelevanceRankAccuracy", {}),
        (
            "top_k_intersection",
            lambda: WM.top_k_intersection(heat, masks, k=100),
            "TopKIntersection",
            {"k": 100},
        ),
        ("localisation_auc", lambda: WM.localisation_auc(heat, masks), "AUC", {}),
    ]
    if quantus is not None:
        for name, ours, qname, qkw in localisation:
            metric = getattr(quantus, qname)(
                normalise=False, abs=False, disable_warnings=True, **qkw
            )
            case(
                name,
                ours,
                lambda metric=metric: q_call(
                    metric, None, dx1, dummy_y, heatn, masksn, batch_size=len(heatn)
                ),
                None,
                max_diff,
                "12x12 ground-truth boxes on 32x32 maps",
            )
    return results


def captum_cases(case, wanted, model, x: Tensor, y: Tensor, sal: Tensor, samples: int, quick: bool):
    """``infidelity`` and ``sensitivity_max`` against Captum 0.9 on the same work.

    Both sides run under the same seed before every call (``interleaved_times``), so a
    perturbation drawn from torch's global generator is the same draw on both sides and
    ``max |diff|`` compares the very numbers (Captum's order of draws is part of the
    contract). Skipped when Captum is not installed.
    """
    try:
        import captum.attr as captum_attr
        import captum.metrics as captum_metrics
    except ImportError:
        print("captum is not installed: infidelity / sensitivity_max skipped", flush=True)
        return
    import whybox.attr as whybox_attr

    def perturb(inputs):
        noise = 0.02 * torch.randn_like(inputs)
        return noise, inputs - noise

    n = x.shape[0]
    rows = torch.cat([x, x.repeat_interleave(samples, dim=0)])
    for name, fn in (("infidelity", WM.infidelity), ("infidelity (normalize)", None)):
        normalize = fn is None
        case(
            name,
            lambda normalize=normalize: WM.infidelity(
                model, perturb, x, sal, target=y, n_perturb_samples=samples, normalize=normalize
            ),
            lambda normalize=normalize: captum_metrics.infidelity(
                model, perturb, x, sal, target=y, n_perturb_samples=samples, normalize=normalize
            ),
            forward_floor(model, rows, torch.cat([y, y.repeat_interleave(samples)])),
            max_diff,
            f"{samples} perturbations per image (noise, x - noise), torch's generator seeded "
            f"alike; floor: the {n} images and their {samples * n} perturbed rows, forward",
            reference="captum",
        )
    ours_saliency = whybox_attr.Saliency(model).attribute
    their_saliency = captum_attr.Saliency(model).attribute
    case(
        "sensitivity_max",
        lambda: WM.sensitivity_max(
            ours_saliency, x, target=y, n_perturb_samples=samples, perturb_radius=0.02
        ),
        lambda: captum_metrics.sensitivity_max(
            their_saliency, x, target=y, n_perturb_samples=samples, perturb_radius=0.02
        ),
        saliency_floor(model, rows, torch.cat([y, y.repeat(samples)])),
        max_diff,
        f"{samples} samples of Captum's default uniform perturbation (the same draws), "
        f"Saliency explains; floor: Saliency of the {n} images and {samples} x {n} "
        "perturbed rows",
        reference="captum",
    )


def _deletion_rows(x: Tensor, a: Tensor, steps: int, *, by_pixel: bool = True) -> Tensor:
    """The deletion rows (example-major): pixels ranked by channel sums, or elements."""
    if by_pixel:
        order = a.sum(1).flatten(1).argsort(dim=1, descending=True, stable=True)
    else:
        order = a.flatten(1).argsort(dim=1, descending=True, stable=True)
    rows = []
    for i in range(x.shape[0]):
        for s in range(steps + 1):
            flat = x[i].flatten(1 if by_pixel else 0).clone()
            chosen = order[i, : round(s / steps * order.shape[1])]
            if by_pixel:
                flat[:, chosen] = 0.0
            else:
                flat[chosen] = 0.0
            rows.append(flat.view_as(x[i]))
    return torch.stack(rows)


def _subset_rows(x: Tensor, subsets: np.ndarray) -> Tensor:
    rows = []
    for s in range(subsets.shape[1]):
        for i in range(x.shape[0]):
            flat = x[i].flatten(1).clone()
            flat[:, torch.from_numpy(subsets[i, s])] = 0.0
            rows.append(flat.view_as(x[i]))
    return torch.stack(rows)


def report(results: list[dict[str, Any]]) -> str:
    lines = [
        "| case | reference | whybox (s) | reference (s) | floor (s) | reference / whybox | "
        "whybox / floor | reference / floor | max abs diff | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        floor = r.get("floor")
        ref = r.get("ref")
        floor_s = "-" if floor is None else f"{floor:.4f}"
        ref_s = "-" if ref is None else f"{ref:.4f}"
        speed = "-" if ref is None else f"{ref / r['whybox']:.1f}x"
        over = "-" if floor is None else f"{r['whybox'] / floor:.2f}x"
        bound = "-" if floor is None or ref is None else f"{ref / floor:.1f}x"
        diff = "-" if np.isnan(r["diff"]) else f"{r['diff']:.1e}"
        lines.append(
            f"| {r['case']} | {r['reference'] if ref is not None else '-'} | "
            f"{r['whybox']:.4f} | {ref_s} | {floor_s} | {speed} | {over} | {bound} | {diff} | "
            f"{r['note']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--output", default=None)
    parser.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="NAME",
        help="run only the cases whose name contains NAME (repeatable); "
        "the table is then printed, and written only with --output",
    )
    args = parser.parse_args(argv)
    configure_threads(args.threads)
    set_clock(args.clock)
    results = run(args.quick, args.only)
    table = report(results)
    print(table)
    if args.only and args.output is None:
        return 0
    output = args.output or (
        "benchmarks/results-metrics-quick.md" if args.quick else "benchmarks/results-metrics.md"
    )
    with open(output, "w") as handle:
        handle.write("# whybox.metrics vs Quantus 0.6 and Captum 0.9\n\n")
        handle.write(
            "SmallCNN 3x32x32 unless the case says (TabularMLP, LargeCNN 3x224x224); "
            f"torch threads {args.threads}, clock {args.clock}; see benchmarks/metrics.py.\n\n"
        )
        handle.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
