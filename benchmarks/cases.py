"""The benchmarked calls: one :class:`Case` per method configuration.

A case builds, for a library (``whybox.attr`` or ``captum.attr``) and a workload, a
zero-argument callable that runs one ``attribute`` call and returns its attributions. Both
libraries get exactly the same arguments (the facade is Captum-compatible), so any
difference in time or memory is the library's.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from models import Workload, build_workload

__all__ = ["Case", "CASES", "LIBRARIES", "library", "make_call", "probe_calls", "equal_batch_rows"]

# Captum warns on every call that it set requires_grad on the inputs or hooks on the model.
warnings.filterwarnings("ignore", message="Input Tensor .* did not already require gradients")
warnings.filterwarnings("ignore", message="Setting (forward, )?backward hooks")

LIBRARIES = {"whybox": "whybox.attr", "captum": "captum.attr"}

# IG "equal batching" rows per forward: 64, or one step of the whole batch when that is larger
# (Captum batches whole steps, so fewer rows than examples would mean one step per forward).
_EQUAL_BATCH = 64


def library(name: str) -> Any:
    """The ``attr`` module of library ``name`` (``"whybox"`` or ``"captum"``)."""
    return importlib.import_module(LIBRARIES[name])


def equal_batch_rows(workload: Workload) -> int:
    """``internal_batch_size`` used for the equal-batching IG cases of ``workload``."""
    return _EQUAL_BATCH if workload.batch <= _EQUAL_BATCH else 16 * workload.batch


@dataclass(frozen=True)
class Case:
    """One benchmarked configuration.

    Attributes
    ----------
    key : stable identifier (used by the memory probe and ``--only``)
    label : what the table shows; may depend on the workload
    requires : the ``attr`` class names the case needs (skipped when a library lacks one)
    rows : forward+backward rows one call needs (for the bare cost)
    build : ``(attr module, workload) -> call``
    """

    key: str
    label: Callable[[Workload], str]
    requires: tuple[str, ...]
    rows: Callable[[Workload], int]
    build: Callable[[Any, Workload], Callable[[], Any]]

    def available(self, attr: Any) -> bool:
        return all(hasattr(attr, name) for name in self.requires)


def _first(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


def _saliency(attr, w):
    method = attr.Saliency(w.model)
    return lambda: method.attribute(w.inputs, target=w.target)


def _input_x_gradient(attr, w):
    method = attr.InputXGradient(w.model)
    return lambda: method.attribute(w.inputs, target=w.target)


def _ig(n_steps: int, equal: bool):
    def build(attr, w):
        method = attr.IntegratedGradients(w.model)
        batch = equal_batch_rows(w) if equal else None
        return lambda: method.attribute(
            w.inputs,
            baselines=w.baseline,
            target=w.target,
            n_steps=n_steps,
            internal_batch_size=batch,
        )

    return build


def _ig_label(n_steps: int, equal: bool):
    def label(w: Workload) -> str:
        batching = f"ibs={equal_batch_rows(w)}" if equal else "ibs=None"
        return f"IntegratedGradients n={n_steps} {batching}"

    return label


_NT_SALIENCY_SAMPLES = 10
_NT_IG_SAMPLES = 5
_NT_IG_STEPS = 20
_GS_SAMPLES = 20


def _nt_saliency(attr, w):
    method = attr.NoiseTunnel(attr.Saliency(w.model))
    return lambda: method.attribute(
        w.inputs, nt_type="smoothgrad", nt_samples=_NT_SALIENCY_SAMPLES, stdevs=0.2, target=w.target
    )


def _nt_ig(attr, w):
    method = attr.NoiseTunnel(attr.IntegratedGradients(w.model))
    return lambda: method.attribute(
        w.inputs,
        nt_type="smoothgrad",
        nt_samples=_NT_IG_SAMPLES,
        stdevs=0.2,
        baselines=w.baseline,
        target=w.target,
        n_steps=_NT_IG_STEPS,
    )


def _gradient_shap(attr, w):
    method = attr.GradientShap(w.model)
    return lambda: method.attribute(
        w.inputs, baselines=w.references, n_samples=_GS_SAMPLES, stdevs=0.1, target=w.target
    )


def _deeplift(attr, w):
    method = attr.DeepLift(w.model)
    return lambda: method.attribute(w.inputs, baselines=w.baseline, target=w.target)


def _deeplift_shap(attr, w):
    method = attr.DeepLiftShap(w.model)
    return lambda: method.attribute(w.inputs, baselines=w.references, target=w.target)


def _guided_backprop(attr, w):
    method = attr.GuidedBackprop(w.model)
    return lambda: method.attribute(w.inputs, target=w.target)


def _deconvolution(attr, w):
    method = attr.Deconvolution(w.model)
    return lambda: method.attribute(w.inputs, target=w.target)


def _fixed(text: str) -> Callable[[Workload], str]:
    return lambda w: text


def _batch(w: Workload) -> int:
    return w.batch


CASES: dict[str, Case] = {
    case.key: case
    for case in [
        Case("saliency", _fixed("Saliency"), ("Saliency",), _batch, _saliency),
        Case(
            "input_x_gradient",
            _fixed("InputXGradient"),
            ("InputXGradient",),
            _batch,
            _input_x_gradient,
        ),
        Case(
            "ig50",
            _ig_label(50, False),
            ("IntegratedGradients",),
            lambda w: 50 * w.batch,
            _ig(50, False),
        ),
        Case(
            "ig200",
            _ig_label(200, False),
            ("IntegratedGradients",),
            lambda w: 200 * w.batch,
            _ig(200, False),
        ),
        Case(
            "ig50_equal",
            _ig_label(50, True),
            ("IntegratedGradients",),
            lambda w: 50 * w.batch,
            _ig(50, True),
        ),
        Case(
            "ig200_equal",
            _ig_label(200, True),
            ("IntegratedGradients",),
            lambda w: 200 * w.batch,
            _ig(200, True),
        ),
        Case(
            "nt_saliency",
            _fixed(f"NoiseTunnel(Saliency) smoothgrad k={_NT_SALIENCY_SAMPLES}"),
            ("NoiseTunnel", "Saliency"),
            lambda w: _NT_SALIENCY_SAMPLES * w.batch,
            _nt_saliency,
        ),
        Case(
            "nt_ig",
            _fixed(f"NoiseTunnel(IG n={_NT_IG_STEPS}) smoothgrad k={_NT_IG_SAMPLES}"),
            ("NoiseTunnel", "IntegratedGradients"),
            lambda w: _NT_IG_SAMPLES * _NT_IG_STEPS * w.batch,
            _nt_ig,
        ),
        Case(
            "gradient_shap",
            _fixed(f"GradientShap n_samples={_GS_SAMPLES}"),
            ("GradientShap",),
            lambda w: _GS_SAMPLES * w.batch,
            _gradient_shap,
        ),
        # Captum's DeepLift runs inputs and baselines as one batch of 2N rows.
        Case("deeplift", _fixed("DeepLift"), ("DeepLift",), lambda w: 2 * w.batch, _deeplift),
        Case(
            "deeplift_shap",
            _fixed("DeepLiftShap"),
            ("DeepLiftShap",),
            lambda w: 2 * w.batch * w.references.shape[0],
            _deeplift_shap,
        ),
        Case(
            "guided_backprop",
            _fixed("GuidedBackprop"),
            ("GuidedBackprop",),
            _batch,
            _guided_backprop,
        ),
        Case("deconvolution", _fixed("Deconvolution"), ("Deconvolution",), _batch, _deconvolution),
    ]
}


def make_call(workload: Workload, key: str, lib: str) -> Callable[[], Tensor]:
    """The call of case ``key`` on ``workload`` with library ``lib``, returning attributions."""
    call = CASES[key].build(library(lib), workload)
    return lambda: _first(call())


def probe_calls(
    workload_name: str, key: str, lib: str, device: str = "cpu", batch: int | None = None
) -> Callable[[], Tensor]:
    """The call of case ``key`` on a freshly built workload (for the memory probe)."""
    return make_call(build_workload(workload_name, device=device, batch=batch), key, lib)
