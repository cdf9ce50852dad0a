"""Captum-compatible perturbation methods: specs for the native methods.

Batching: Captum evaluates ``perturbations_per_eval`` perturbations of the batch per
forward, 1 by default. :func:`~whybox.attr._adapter.chunk_from_perturbations_per_eval`
maps it onto the one native knob, ``chunk_size`` (rows per forward, rounded down to whole
perturbations): the default 1 means "auto" (whybox picks a memory-bounded chunk; results
are identical whatever the chunk), and any other value ``k`` means ``k * N`` rows, i.e.
exactly ``k`` perturbations per forward, as in Captum. Models that return one scalar per batch always
get one perturbation per forward. ``LimeBase`` keeps Captum's meaning of 1 (one sample
per forward), because its user transforms may produce inputs of different shapes and
forward functions written for a single sample.

Random methods draw from :class:`~whybox.core.randomness.GlobalRandom`, i.e. torch's (and
numpy's) global generators in Captum 0.9's order: ``torch.manual_seed`` makes runs
reproducible, and ShapleyValueSampling, FeaturePermutation and Lime's default sampler give
Captum's draws.

Dtypes: Occlusion, ShapleyValueSampling, ShapleyValues, Lime, KernelShap and LimeBase
return float64 for float64 inputs (whybox's rule: the inputs' dtype) and float32 otherwise,
as Captum does (Captum returns float32 even for float64 inputs). FeatureAblation and
FeaturePermutation return the model output's dtype, as Captum does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from whybox import methods as native
from whybox.core.inputs import flatten
from whybox.core.randomness import GlobalRandom
from whybox.core.result import Explanation
from whybox.core.surrogate import (
    SkLearnLasso,
    SkLearnLinearModel,
    SkLearnLinearRegression,
    SkLearnRidge,
    WeightedLasso,
    WeightedLinearRegression,
    WeightedRidge,
    default_perturb_func,
    get_exp_kernel_similarity_function,
)
from whybox.core.targets import ALL_OUTPUTS
from whybox.methods.lime import (
    baseline_token_transform,
    default_from_interp_rep_transform,
    token_removal_transform,
)

from ._adapter import LAYER, SAMPLES_PER_EVAL, Call, Spec, check, run
from ._assertion_errors import DropInValueError
from ._base import NoFuture, PerturbationAttribution
from ._layer import LayerAttribution, NeuronAttribution

__all__ = [
    "FeatureAblation",
    "FeaturePermutation",
    "Occlusion",
    "ShapleyValueSampling",
    "ShapleyValues",
    "LimeBase",
    "Lime",
    "KernelShap",
    "LayerFeatureAblation",
    "NeuronFeatureAblation",
    "get_exp_kernel_similarity_function",
    "default_perturb_func",
    "default_from_interp_rep_transform",
    "token_removal_transform",
    "baseline_token_transform",
    "SkLearnLinearModel",
    "SkLearnLinearRegression",
    "SkLearnLasso",
    "SkLearnRidge",
    "WeightedLasso",
    "WeightedRidge",
    "WeightedLinearRegression",
]


def _in_captum_dtype(result: Explanation, call: Call) -> Any:
    """Return convention of the Occlusion / Shapley / LIME classes: the attributions in
    their facade dtype.

    float64 for float64 inputs (whybox's rule: the inputs' dtype), float32 for everything
    else (Captum's, whatever the inputs). Input-shaped results follow their own input; a
    ``(N, M)`` coefficient table spanning inputs is float64 when any input is.
    """

    def rule(*tensors: Tensor) -> torch.dtype:
        return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32

    def cast(a: Tensor, dtype: torch.dtype) -> Tensor:
        return a if a.dtype == dtype else a.to(dtype)

    if isinstance(result.attributions, Tensor) and isinstance(result.inputs, Tensor):
        return cast(result.attributions, rule(result.inputs))  # one input (tiny jobs)
    inputs, _ = flatten(result.inputs, owner="attribute")
    leaves, structure = flatten(result.attributions, owner="attribute")
    if len(leaves) == len(inputs):
        return structure.rebuild([cast(a, rule(x)) for a, x in zip(leaves, inputs)])
    return structure.rebuild([cast(a, rule(*inputs)) for a in leaves])


def _by_output(result: Explanation, call: Call) -> Any:
    """Return convention of ShapleyValueSampling / ShapleyValues: the attributions in their
    facade dtype (see :func:`_in_captum_dtype`) laid out as Captum lays them out with
    ``target=None``: ``(*output_shape, *input.shape[1:])``, one block per value of the
    model's output (``(N, 1, ...)`` for an ``(N, 1)`` output, ``(1, ...)`` for one value per
    batch)."""
    attributions = _in_captum_dtype(result, call)
    shape = tuple(result.extras.get("output_shape", ()))
    if call.arguments.get("target") is not None or not shape:
        return attributions
    leaves, structure = flatten(attributions, owner="attribute")
    rows = 1
    for size in shape:
        rows *= size
    laid = [a.reshape(shape + tuple(a.shape[1:])) if a.shape[0] == rows else a for a in leaves]
    return structure.rebuild(laid)


def _permute_feature(x: Tensor, feature_mask: Tensor) -> Tensor:
    """Captum's default ``perm_func``: shuffle the masked elements across the batch.

    Draws one non-identity permutation from the global generator as Captum does
    (``torch.randperm``, re-drawn while it is the identity), so seeded code gives
    Captum's numbers.
    """
    n = x.size(0)
    if n < 2:
        raise ValueError("FeaturePermutation cannot permute features of a batch of 1 example.")
    perm = GlobalRandom().permutations(1, n, exclude_identity=True, device=x.device)[0]
    mask = feature_mask.to(x.device)
    return torch.where(mask, x[perm], x)


def _custom(attribute: str, default: Callable[..., Any]) -> Callable[[Any], Any]:
    """A factory for a native option: the facade's ``attribute``, or ``None`` (the native
    default) while it is Captum's ``default``, which the native path draws vectorised."""

    def option(facade: Any) -> Any:
        value = getattr(facade, attribute)
        return None if value is default else value

    return option


_LIME_BASE_OPTIONS = (
    "interpretable_model",
    "similarity_func",
    "perturb_func",
    "perturb_interpretable_space",
    "from_interp_rep_transform",
    "to_interp_rep_transform",
)
_LAYER_MASK = {"layer_mask": "feature_mask"}


def _numeric_baselines(baselines: Any, call: Call) -> Any:
    """Captum's ``baselines=True`` (a bool for boolean inputs) as the number it stands for."""
    if isinstance(baselines, bool):
        return int(baselines)
    if isinstance(baselines, tuple):
        return tuple(int(b) if isinstance(b, bool) else b for b in baselines)
    return baselines


#: the baselines conversion every perturbation class shares
_BASELINES = {"baselines": ("baselines", _numeric_baselines)}


def _all_outputs_when_none(target: Any, call: Call) -> Any:
    """Captum's ``target=None`` in the ablation family: every output value is explained,
    attributions ``(n_outputs, ...)`` (one row per value the model returns)."""
    return ALL_OUTPUTS if target is None else target


_ABLATION = {**_BASELINES, "target": ("target", _all_outputs_when_none)}


def _permutation_generator(num_features: int, num_samples: int) -> Any:
    """Captum's ``permutation_generator`` of ShapleyValueSampling: ``num_samples`` random
    orderings of ``range(num_features)`` from torch's global generator."""
    return (torch.randperm(num_features) for _ in range(num_samples))


def _all_permutations(num_features: int, num_samples: int) -> Any:
    """Captum's ``permutation_generator`` of ShapleyValues: every ordering (``num_samples``
    is ignored)."""
    import itertools

    return (list(p) for p in itertools.permutations(range(num_features)))


class FeatureAblation(PerturbationAttribution):
    """Captum-compatible :class:`whybox.methods.FeatureAblation`."""

    _spec = Spec(native.FeatureAblation, renames=_ABLATION)
    #: Captum's attribute (Occlusion averages over the windows covering an element)
    use_weights = False

    def attribute(
        self,
        inputs: Any,
        baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        feature_mask: Any = None,
        perturbations_per_eval: int = 1,
        show_progress: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Ablation attributions shaped like ``inputs`` (first dimension 1 for models that
        return one scalar per batch); ``**kwargs`` are accepted and ignored as in Captum."""
        return run(self, self._spec, locals())

    def attribute_future(
        self,
        inputs: Any,
        baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        feature_mask: Any = None,
        perturbations_per_eval: int = 1,
        show_progress: bool = False,
        **kwargs: Any,
    ) -> torch.futures.Future:
        """:meth:`attribute` for a forward function returning ``torch.futures.Future``:
        the attributions in a completed ``Future``."""
        return run(self, self._spec, locals(), future=True)


class FeaturePermutation(FeatureAblation):
    """Captum-compatible :class:`whybox.methods.FeaturePermutation`.

    Captum's default ``perm_func`` is replaced by the vectorised native path, which draws
    the same ``torch.randperm`` permutations in the same order (one per feature of a
    forward, for every input holding one of them).
    """

    _spec = Spec(
        native.FeaturePermutation,
        init={"perm_func": _custom("perm_func", _permute_feature)},
        renames={"target": _ABLATION["target"]},
        captum_random=True,
    )

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        perm_func: Callable[[Tensor, Tensor], Tensor] = _permute_feature,
    ) -> None:
        super().__init__(forward_func)
        self.perm_func = perm_func

    def attribute(  # type: ignore[override]
        self,
        inputs: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        feature_mask: Any = None,
        perturbations_per_eval: int = 1,
        show_progress: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Permutation attributions (the batch needs at least 2 examples)."""
        return run(self, self._spec, locals())

    def attribute_future(  # type: ignore[override]
        self,
        inputs: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        feature_mask: Any = None,
        perturbations_per_eval: int = 1,
        show_progress: bool = False,
        **kwargs: Any,
    ) -> torch.futures.Future:
        """:meth:`attribute` for a forward function returning ``torch.futures.Future``."""
        return run(self, self._spec, locals(), future=True)


class Occlusion(NoFuture, FeatureAblation):
    """Captum-compatible :class:`whybox.methods.Occlusion` (float64 results for float64
    inputs, float32 otherwise as in Captum)."""

    _spec = Spec(native.Occlusion, renames=_ABLATION, returns=_in_captum_dtype)
    use_weights = True

    def attribute(  # type: ignore[override]
        self,
        inputs: Any,
        sliding_window_shapes: Any,
        strides: Any = None,
        baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        perturbations_per_eval: int = 1,
        show_progress: bool = False,
    ) -> Any:
        return run(self, self._spec, locals())


class ShapleyValueSampling(PerturbationAttribution):
    """Captum-compatible :class:`whybox.methods.ShapleyValueSampling`.

    Orderings are drawn with ``torch.randperm`` from the global generator in Captum's
    order, so seeded runs reproduce Captum 0.9's numbers (float32 results).
    """

    _spec = Spec(
        native.ShapleyValueSampling,
        renames=_ABLATION,
        captum_random=True,
        returns=_by_output,
    )
    #: Captum's attribute (the native path draws the same orderings vectorised)
    permutation_generator = staticmethod(_permutation_generator)

    def attribute(
        self,
        inputs: Any,
        baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        feature_mask: Any = None,
        n_samples: int = 25,
        perturbations_per_eval: int = 1,
        show_progress: bool = False,
    ) -> Any:
        return run(self, self._spec, locals())

    def attribute_future(
        self,
        inputs: Any,
        baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        feature_mask: Any = None,
        n_samples: int = 25,
        perturbations_per_eval: int = 1,
        show_progress: bool = False,
    ) -> torch.futures.Future:
        """:meth:`attribute` for a forward function returning ``torch.futures.Future``."""
        return run(self, self._spec, locals(), future=True)


class ShapleyValues(PerturbationAttribution):
    """Captum-compatible :class:`whybox.methods.ShapleyValues`: exact, from ``2**M``
    coalitions instead of Captum's ``M * M!`` permutation steps (same values)."""

    _spec = Spec(native.ShapleyValues, renames=_ABLATION, returns=_by_output)
    permutation_generator = staticmethod(_all_permutations)

    def attribute(
        self,
        inputs: Any,
        baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        feature_mask: Any = None,
        perturbations_per_eval: int = 1,
        show_progress: bool = False,
    ) -> Any:
        return run(self, self._spec, locals())

    def attribute_future(
        self,
        inputs: Any,
        baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        feature_mask: Any = None,
        n_samples: int = 25,
        perturbations_per_eval: int = 1,
        show_progress: bool = False,
    ) -> torch.futures.Future:
        """:meth:`attribute` for a forward function returning ``torch.futures.Future``
        (``n_samples`` is accepted and unused, as in Captum: every ordering counts)."""
        del n_samples
        return run(self, self._spec, locals(), future=True)


class LimeBase(NoFuture, PerturbationAttribution):
    """Captum-compatible :class:`whybox.methods.LimeBase`.

    ``perturbations_per_eval`` keeps Captum's meaning here: that many samples per forward
    (1 by default), since user transforms may change input shapes.
    """

    # Captum reports LIME's coefficients as not multiplied by inputs
    _multiply_by_inputs = False
    _spec = Spec(
        native.LimeBase,
        init={name: name for name in _LIME_BASE_OPTIONS},
        renames={"perturbations_per_eval": SAMPLES_PER_EVAL},
        pass_kwargs=True,  # LimeBase hands them to its perturb and transform functions
    )

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        interpretable_model: Any,
        similarity_func: Callable[..., Any],
        perturb_func: Callable[..., Any],
        perturb_interpretable_space: bool,
        from_interp_rep_transform: Callable[..., Any] | None,
        to_interp_rep_transform: Callable[..., Any] | None,
    ) -> None:
        super().__init__(forward_func)
        self.interpretable_model = interpretable_model
        self.similarity_func = similarity_func
        self.perturb_func = perturb_func
        self.perturb_interpretable_space = perturb_interpretable_space
        self.from_interp_rep_transform = from_interp_rep_transform
        self.to_interp_rep_transform = to_interp_rep_transform
        # the options and their combination are checked now, as in Captum's constructor
        check(self, self._spec)

    def attribute(
        self,
        inputs: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        n_samples: int = 50,
        perturbations_per_eval: int = 1,
        show_progress: bool = False,
        **kwargs: Any,
    ) -> Tensor:
        """The fitted surrogate's ``representation()``, ``(1, M)`` for one output (float64
        for float64 inputs, float32 otherwise)."""
        return run(self, self._spec, locals())


class Lime(LimeBase):
    """Captum-compatible :class:`whybox.methods.Lime`.

    Defaults as Captum 0.9: a Lasso surrogate with ``alpha=0.01`` (here the torch-native
    :class:`~whybox.core.surrogate.WeightedLasso`, same objective), an exponential kernel
    on the cosine distance, and groups kept with probability 1/2 (drawn from torch's global
    generator). ``from_interp_rep_transform`` is Captum's default transform and can be
    called directly, as in Captum. A ``perturb_func`` other than the default is honoured.
    """

    _spec = Spec(
        native.Lime,
        init={
            "interpretable_model": "interpretable_model",
            "similarity_func": "similarity_func",
            "perturb_func": _custom("perturb_func", default_perturb_func),
        },
        renames=_BASELINES,
        captum_random=True,
        returns=_in_captum_dtype,
    )

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        interpretable_model: Any = None,
        similarity_func: Callable[..., Any] | None = None,
        perturb_func: Callable[..., Any] | None = None,
    ) -> None:
        PerturbationAttribution.__init__(self, forward_func)
        # Captum's defaults, stored as Captum stores them
        self.interpretable_model = (
            WeightedLasso(alpha=0.01) if interpretable_model is None else interpretable_model
        )
        self.similarity_func = (
            get_exp_kernel_similarity_function() if similarity_func is None else similarity_func
        )
        self.perturb_func = default_perturb_func if perturb_func is None else perturb_func
        self.perturb_interpretable_space = True
        self.from_interp_rep_transform = default_from_interp_rep_transform
        self.to_interp_rep_transform = None

    def attribute(  # type: ignore[override]
        self,
        inputs: Any,
        baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        feature_mask: Any = None,
        n_samples: int = 25,
        perturbations_per_eval: int = 1,
        return_input_shape: bool = True,
        show_progress: bool = False,
    ) -> Any:
        return run(self, self._spec, locals())


class KernelShap(Lime):
    """Captum-compatible :class:`whybox.methods.KernelShap`.

    ``n_samples`` counts model evaluations per example including the empty and full
    coalitions, as in Captum. whybox samples complementary coalition pairs, enumerates
    small coalition sizes exactly and solves the Shapley-kernel regression with the
    efficiency constraint exactly (Captum fits an unconstrained regression with large
    weights on the two constraint rows); with ``n_samples >= 2**M`` the result is exact.
    As in Captum, each example of a batch gets its own coalitions, drawn from torch's
    global generator after the previous example's (native ``coalitions="per_example"``):
    row ``i`` of a batch equals the ``i``-th of single calls made after one seed. The
    forwards still hold the rows of every example.
    """

    _spec = Spec(
        native.KernelShap,
        renames=_BASELINES,
        # Captum fits one example at a time, each on coalitions drawn after the previous
        # example's: a batch's row i is what the i-th of single calls seeded once gives
        fixed={"coalitions": "per_example"},
        captum_random=True,
        returns=_in_captum_dtype,
    )
    #: Captum's attribute: the weight of the empty and full coalitions in its regression
    #: (whybox enforces that constraint exactly instead)
    inf_weight = 1000000.0

    def kernel_shap_similarity_kernel(
        self, _: Any, __: Any, interpretable_sample: Tensor, **kwargs: Any
    ) -> Tensor:
        """Captum's sample weight for a LimeBase built from KernelShap's parts:
        ``inf_weight`` for the empty and the full coalition, 1 otherwise (the coalition
        sizes are drawn from the Shapley kernel by :meth:`kernel_shap_perturb_generator`).

        Parameters
        ----------
        interpretable_sample : Tensor
            ``(1, M)`` binary coalition.
        **kwargs
            ``num_interp_features`` (``M``) is required.
        """
        if "num_interp_features" not in kwargs:
            raise DropInValueError(
                "The 'num_interp_features' parameter of KernelShap.kernel_shap_similarity_"
                "kernel must be given. Got nothing.",
                parameter="num_interp_features",
            )
        selected = int(interpretable_sample.sum(dim=1).item())
        full = selected in (0, int(kwargs["num_interp_features"]))
        return torch.tensor([self.inf_weight if full else 1.0])

    def kernel_shap_perturb_generator(self, original_inp: Any, **kwargs: Any) -> Any:
        """Captum's coalition sampler: the full and the empty coalition, then forever a
        size ``k`` from ``kwargs["num_select_distribution"]`` (a ``Categorical`` over sizes)
        and ``k`` features chosen uniformly (the top ``k`` of Gaussian noise), each as a
        ``(1, M)`` long tensor. Draws come from torch's global generator in Captum's
        order.

        Parameters
        ----------
        original_inp : Tensor or tuple of Tensor
            Gives the device.
        **kwargs
            ``num_interp_features`` and ``num_select_distribution`` are required.
        """
        missing = [k for k in ("num_interp_features", "num_select_distribution") if k not in kwargs]
        if missing:
            raise DropInValueError(
                f"The '{missing[0]}' parameter of KernelShap.kernel_shap_perturb_generator "
                "must be given. Got nothing.",
                parameter=missing[0],
            )
        device = (original_inp if isinstance(original_inp, Tensor) else original_inp[0]).device
        m = int(kwargs["num_interp_features"])
        yield torch.ones(1, m, device=device, dtype=torch.long)
        yield torch.zeros(1, m, device=device, dtype=torch.long)
        while True:
            k = int(kwargs["num_select_distribution"].sample())
            noise = torch.randn(1, m)
            threshold = torch.kthvalue(noise, m - k).values.item()
            yield (noise > threshold).to(device=device).long()

    def __init__(self, forward_func: Callable[..., Tensor]) -> None:
        Lime.__init__(self, forward_func, interpretable_model=WeightedLinearRegression())


class LayerFeatureAblation(LayerAttribution, PerturbationAttribution):
    """Captum-compatible LayerFeatureAblation: ablate a layer's activations
    (native: ``FeatureAblation(model, layer=...)``).

    ``device_ids`` is accepted for ``DataParallel`` compatibility and unused.
    """

    _spec = Spec(
        native.FeatureAblation,
        renames={
            "layer_baselines": ("baselines", _numeric_baselines),
            "target": _ABLATION["target"],
            **_LAYER_MASK,
        },
        **LAYER,
    )

    @property
    def attributor(self) -> type:
        """The input-space class whose ablation runs on the layer's values (Captum's
        attribute)."""
        return FeatureAblation

    def attribute(
        self,
        inputs: Any,
        layer_baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        layer_mask: Any = None,
        attribute_to_layer_input: bool = False,
        perturbations_per_eval: int = 1,
    ) -> Any:
        """Attributions shaped like the layer's output (input with
        ``attribute_to_layer_input``)."""
        return run(self, self._spec, locals())


class NeuronFeatureAblation(NeuronAttribution, PerturbationAttribution):
    """Captum-compatible NeuronFeatureAblation: FeatureAblation of one neuron's value
    (the model stops right after ``layer``)."""

    _spec = Spec(native.FeatureAblation, neuron=True, renames=_BASELINES)

    def attribute(
        self,
        inputs: Any,
        neuron_selector: Any,
        baselines: Any = None,
        additional_forward_args: Any = None,
        feature_mask: Any = None,
        attribute_to_neuron_input: bool = False,
        perturbations_per_eval: int = 1,
    ) -> Any:
        return run(self, self._spec, locals())


class LayerFeaturePermutation(LayerAttribution, PerturbationAttribution):
    """Captum-compatible LayerFeaturePermutation: shuffle each group of a layer's units
    across the batch and record the drop in the target (native:
    ``FeaturePermutation(model, layer=...)``). Permutations come from torch's global
    generator in Captum's order."""

    _spec = Spec(
        native.FeaturePermutation,
        layer=True,
        renames={**_LAYER_MASK, "target": _ABLATION["target"]},
        captum_random=True,
    )
    use_weights = False
    #: Captum's default permutation function (the native path draws the same shuffles)
    perm_func = staticmethod(_permute_feature)

    @property
    def attributor(self) -> type:
        """The input-space class whose permutation runs on the layer's values (Captum's
        attribute)."""
        return FeaturePermutation

    def attribute(
        self,
        inputs: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        layer_mask: Any = None,
        perturbations_per_eval: int = 1,
    ) -> Any:
        """Attributions shaped like the layer's output (the batch needs >= 2 examples)."""
        return run(self, self._spec, locals())

    def attribute_future(
        self,
        inputs: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        feature_mask: Any = None,
        perturbations_per_eval: int = 1,
        show_progress: bool = False,
        **kwargs: Any,
    ) -> torch.futures.Future:
        """:meth:`attribute` for a forward function returning ``torch.futures.Future``
        (Captum names the layer mask ``feature_mask`` here)."""
        layer_mask = feature_mask
        del feature_mask, show_progress, kwargs
        return run(self, self._spec, locals(), future=True)
