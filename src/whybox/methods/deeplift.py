"""DeepLift with the Rescale rule, and DeepLiftShap.

Shrikumar et al., "Learning Important Features Through Propagating Activation Differences",
2017; gradient formulation of Ancona et al., "Towards better understanding of gradient-based
attribution methods for deep neural networks", 2018.

Each input row ``x`` is evaluated together with its reference row ``b`` in one forward: the
rows of a chunk are laid out ``[inputs; references]`` (``k`` input rows, then their ``k``
references). Every supported nonlinearity keeps its value but its backward is replaced by the
Rescale multiplier computed from the two halves,

    m = (f(x_in) - f(x_ref)) / (x_in - x_ref)     (the local derivative where |x_in - x_ref| < eps)

so one backward pass gives the DeepLift multipliers ``d f / d x`` of every input row, and the
attribution is ``(x - b) * m`` (``m`` when ``multiply_by_inputs=False``). The chain of Rescale
multipliers sums to the difference of outputs, so the convergence delta
``sum(attributions) - (f(x) - f(b))`` is ~0; it costs nothing extra, because the outputs of
both halves come out of the same forward.

Supported modules (exactly Captum 0.9's set, matched by exact type): ``nn.ReLU``, ``nn.ELU``,
``nn.LeakyReLU``, ``nn.Sigmoid``, ``nn.Tanh``, ``nn.Softplus`` (elementwise Rescale),
``nn.Softmax`` and ``nn.MaxPool1d/2d/3d``. Every other module is differentiated as usual
(exact for linear layers). Nonlinearities called as functions (``torch.relu``) are not seen.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from whybox.core.call import Call, prepare_call
from whybox.core.forward import ChunkSize, RowBatch, evaluate
from whybox.core.hooks import module_rules
from whybox.core.inputs import prepare_baselines
from whybox.core.registry import register
from whybox.core.result import Explanation
from whybox.core.validation import check_bool, check_choice, check_real, fail

from .base import Method

__all__ = ["DeepLift", "DeepLiftShap", "SUPPORTED_NONLINEARITIES"]

_ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ELU,
    nn.LeakyReLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
)
# type -> (pool, Captum's unpool, number of pooled dimensions)
_POOLS: dict[type[nn.Module], tuple[Callable[..., Any], Callable[..., Any], int]] = {
    nn.MaxPool1d: (F.max_pool1d, F.max_unpool1d, 1),
    nn.MaxPool2d: (F.max_pool2d, F.max_unpool2d, 2),
    nn.MaxPool3d: (F.max_pool3d, F.max_unpool3d, 3),
}
#: Module types whose backward DeepLift replaces.
SUPPORTED_NONLINEARITIES: tuple[type[nn.Module], ...] = _ELEMENTWISE + (nn.Softmax,) + tuple(_POOLS)

Variant = Literal["rescale", "captum"]


# --------------------------------------------------------------------------------------------
# Rules: each receives the module's input and output for a chunk laid out [inputs; references]
# and returns a tensor with the same value whose gradient is the DeepLift multiplier.
# --------------------------------------------------------------------------------------------


def _halves(tensor: Tensor, module: nn.Module) -> tuple[Tensor, Tensor]:
    if tensor.dim() == 0 or tensor.shape[0] % 2:
        raise ValueError(
            f"DeepLift expects every {type(module).__name__} module to see the batch dimension "
            f"first (rows [inputs; baselines]); got a tensor of shape {tuple(tensor.shape)}. "
            "Models that move the batch dimension before a nonlinearity are not supported."
        )
    first, second = tensor.chunk(2)
    return first, second


def _ratio(dx: Tensor, dy: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """``dy / dx`` where ``|dx| >= eps`` (0 elsewhere) and the mask of the other positions."""
    small = dx.abs() < eps
    # Divide by 1 at small positions so no inf/nan is ever formed (0 * inf would leak a nan).
    ratio = torch.where(
        small, torch.zeros_like(dy), dy / torch.where(small, torch.ones_like(dx), dx)
    )
    return ratio, small


def _twice(tensor: Tensor) -> Tensor:
    # Both halves of a pair share the multiplier (Captum's convention for the reference rows).
    return torch.cat([tensor, tensor])


def _elementwise_rule(eps: float) -> Callable[[nn.Module, Tensor, Tensor], Tensor]:
    def rule(module: nn.Module, x: Tensor, out: Tensor) -> Tensor:
        with torch.no_grad():
            x_in, x_ref = _halves(x, module)
            out_in, out_ref = _halves(out, module)
            ratio, small = _ratio(x_in - x_ref, out_in - out_ref, eps)
            ratio, small = _twice(ratio), _twice(small)
        # Same value as ``out``; d/dx is ``ratio`` (x - x.detach() is exactly 0 but carries the
        # gradient). Where the input barely moved, the module's own graph gives f'(x).
        rescaled = out.detach() + (x - x.detach()) * ratio
        return torch.where(small, out, rescaled)

    return rule


def _softmax_dim(module: nn.Softmax, ndim: int) -> int:
    if module.dim is not None:
        return module.dim
    # torch's legacy implicit-dim choice for nn.Softmax(dim=None).
    return 0 if ndim in (0, 1, 3) else 1


class _SoftmaxRescale(torch.autograd.Function):
    """Value of softmax; backward = Rescale multiplier per element, optionally centred."""

    @staticmethod
    def forward(ctx, x, out, ratio, small, dim, center):
        ctx.save_for_backward(out, ratio, small)
        ctx.dim = dim
        ctx.center = center
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        out, ratio, small = ctx.saved_tensors
        # Softmax's exact vector-Jacobian product where the input did not move.
        local = out * (grad - (grad * out).sum(ctx.dim, keepdim=True))
        multiplier = torch.where(small, local, grad * ratio)
        if ctx.center:
            # Captum 0.9: subtract the mean over the WHOLE evaluated tensor (all rows).
            multiplier = multiplier - multiplier.sum() / multiplier.numel()
        return multiplier, None, None, None, None, None


def _softmax_rule(eps: float, center: bool) -> Callable[[nn.Module, Tensor, Tensor], Tensor]:
    def rule(module: nn.Module, x: Tensor, out: Tensor) -> Tensor:
        with torch.no_grad():
            x_in, x_ref = _halves(x, module)
            out_in, out_ref = _halves(out, module)
            ratio, small = _ratio(x_in - x_ref, out_in - out_ref, eps)
        dim = _softmax_dim(module, out.dim())
        return _SoftmaxRescale.apply(x, out.detach(), _twice(ratio), _twice(small), dim, center)

    return rule


def _scatter_to_input(values: Tensor, indices: Tensor, shape: torch.Size, n_spatial: int) -> Tensor:
    """Add pooled ``values`` back at the input positions ``indices``.

    ``indices`` are flat positions within each plane of the last ``n_spatial`` dimensions (as
    ``max_pool*d(return_indices=True)`` gives them). Unlike ``max_unpool`` this *adds* when
    overlapping windows share an argmax, which is what the chain rule (and completeness)
    requires.
    """
    planes = values.shape[:-n_spatial].numel()
    flat = values.new_zeros(planes, torch.Size(shape[-n_spatial:]).numel())
    flat.scatter_add_(1, indices.reshape(planes, -1), values.reshape(planes, -1))
    return flat.view(shape)


class _MaxPoolRescale(torch.autograd.Function):
    """Value of max pooling; backward = DeepLift's max-pool multiplier.

    For a window with outputs ``y = max x_in`` and ``y_ref = max x_ref`` the output difference
    ``y - y_ref = (max(y, y_ref) - y_ref) + (y - max(y, y_ref))`` is split into a part carried
    by the input's argmax and a part carried by the reference's argmax; the sum of both, per
    input position, divided by ``x_in - x_ref`` is the multiplier.
    """

    @staticmethod
    def forward(ctx, x, out, indices, n_spatial, eps, unpool):
        ctx.save_for_backward(x, out, indices)
        ctx.n_spatial = n_spatial
        ctx.eps = eps
        ctx.unpool = unpool
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        x, out, indices = ctx.saved_tensors
        x_in, x_ref = x.chunk(2)
        out_in, out_ref = out.chunk(2)
        grad_in, grad_ref = grad.chunk(2)
        top = torch.max(out_in, out_ref)
        carried = torch.cat([grad_in * (top - out_ref), grad_ref * (out_in - top)])
        if ctx.unpool is None:
            spread = _scatter_to_input(carried, indices, x.shape, ctx.n_spatial)
        else:  # Captum 0.9: max_unpool keeps ONE of the values sharing an argmax
            spread = ctx.unpool(carried, indices, x.shape)
        spread_in, spread_ref = spread.chunk(2)
        dx = x_in - x_ref
        small = dx.abs() < ctx.eps
        multiplier = (spread_in + spread_ref) / torch.where(small, torch.ones_like(dx), dx)
        # Where the input did not move: the ordinary max-pool gradient of each row.
        local = _scatter_to_input(grad, indices, x.shape, ctx.n_spatial)
        return torch.where(_twice(small), local, _twice(multiplier)), None, None, None, None, None


def _pool_rule(
    pool: Callable[..., Any], unpool: Callable[..., Any], n_spatial: int, eps: float, captum: bool
) -> Callable[[nn.Module, Tensor, Tensor], Tensor]:
    def rule(module: nn.Module, x: Tensor, out: Tensor) -> Tensor:
        _halves(x, module)
        with torch.no_grad():
            _, indices = pool(
                x.detach(),
                module.kernel_size,
                stride=module.stride,
                padding=module.padding,
                dilation=module.dilation,
                ceil_mode=module.ceil_mode,
                return_indices=True,
            )

        def unpool_like_captum(values: Tensor, idx: Tensor, shape: torch.Size) -> Tensor:
            return unpool(
                values, idx, module.kernel_size, module.stride, module.padding, list(shape)
            )

        return _MaxPoolRescale.apply(
            x, out.detach(), indices, n_spatial, eps, unpool_like_captum if captum else None
        )

    return rule


Rule = Callable[[nn.Module, Tensor, Tensor], Tensor]


def _rules(eps: float, variant: str) -> tuple[dict[type, Rule], Callable[[], None]]:
    """The rule of every supported module type, and a reset to call before each forward."""
    rules: dict[type, Rule] = {cls: _elementwise_rule(eps) for cls in _ELEMENTWISE}
    rules[nn.Softmax] = _softmax_rule(eps, center=variant == "captum")
    for cls, (pool, unpool, n_spatial) in _POOLS.items():
        rules[cls] = _pool_rule(pool, unpool, n_spatial, eps, captum=variant == "captum")
    if variant == "captum":
        return _captum_adjacency(rules)
    return rules, lambda: None


def _captum_adjacency(rules: dict[type, Rule]) -> tuple[dict[type, Rule], Callable[[], None]]:
    """Reproduce how Captum 0.9's hooks combine when one supported module feeds another.

    Captum records a module's output gradient in a tensor hook registered *before* the next
    module's input hook on the same tensor, so when ``U``'s output is directly ``D``'s input,
    ``U``'s rule reads ``D``'s ordinary gradient and ``D``'s rule is lost (e.g. the max pool
    after a ReLU). Along a chain the rules therefore alternate: a module keeps its rule unless
    its input is the output of a module that kept its rule. (Captum additionally uses ``D``'s
    rule at ``U``'s positions with ``|x_in - x_ref| < eps``; that case is not reproduced.)
    """
    kept: dict[int, tuple[Tensor, bool]] = {}  # id(output) -> (output, rule kept), one forward

    def wrap(rule: Rule) -> Rule:
        def wrapped(module: nn.Module, x: Tensor, out: Tensor) -> Tensor:
            producer = kept.get(id(x))
            keep = producer is None or producer[0] is not x or not producer[1]
            result = rule(module, x, out) if keep else out
            kept[id(result)] = (result, keep)
            return result

        return wrapped

    return {cls: wrap(rule) for cls, rule in rules.items()}, kept.clear


# --------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------


def _custom_arity(owner: str, func: Any) -> int:
    if not callable(func):
        fail(owner, "custom_attribution_func", "a callable or None", func, type_error=True)
    try:
        n_params = len(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        n_params = 3
    if n_params not in (1, 2, 3):
        fail(
            owner,
            "custom_attribution_func",
            "a callable taking 1 to 3 arguments (multipliers[, inputs[, baselines]])",
            f"a callable taking {n_params}",
            raw=True,
        )
    return n_params


@register("deeplift")
class DeepLift(Method):
    """DeepLift (Rescale rule) against one reference per example.

    Parameters
    ----------
    model : nn.Module
        The model; its supported nonlinearity modules get the Rescale rule for the call.
    multiply_by_inputs : bool
        Return ``(x - b) * multipliers`` (global attribution) rather than the multipliers.
    eps : float
        Input differences with ``|x - b| < eps`` at a nonlinearity use its local gradient.
    layer : nn.Module or list of nn.Module, optional
        Layer scope (Captum's LayerDeepLift): the multipliers are taken at the layer's output
        (input with ``attribute_to_layer_input``) from the same paired forward, and the
        attribution is ``(layer(x) - layer(b)) * multipliers``, shaped like the layer; the
        inputs may then be integer token ids. The layer's own rule is left out when
        attributing to its output (as Captum does; it cannot change the result otherwise).
    attribute_to_layer_input : bool
        With ``layer``, attribute to the layer's input instead of its output.
    variant : {"rescale", "captum"}
        ``"rescale"`` (default): the Rescale rule at every supported module, ``nn.Softmax``
        treated elementwise like the other activations; completeness holds and each
        example's result is independent of the batch. ``"captum"`` reproduces Captum 0.9's
        numbers (the :mod:`whybox.attr` facade uses it): (1) softmax multipliers are centred
        by their mean over the whole evaluated batch, so results depend on the batch (all
        pairs are then evaluated in one chunk, whatever ``chunk_size``); (2) when a supported
        module's output is directly the input of another (ReLU -> MaxPool), the downstream
        module's rule is lost as in Captum's hooks (see :func:`_captum_adjacency`); (3) max
        pools spread differences with ``max_unpool``, which keeps only one of the values
        of overlapping windows sharing an argmax (the default adds them, as the chain rule
        does).
        Completeness does not hold in general in this variant.
    """

    has_delta = True
    needs_module = True

    def __init__(
        self,
        model: nn.Module,
        *,
        multiply_by_inputs: bool = True,
        eps: float = 1e-10,
        variant: Variant = "rescale",
        layer: Any = None,
        attribute_to_layer_input: bool = False,
    ) -> None:
        super().__init__(
            model,
            multiply_by_inputs=multiply_by_inputs,
            layer=layer,
            attribute_to_layer_input=attribute_to_layer_input,
        )
        self.eps = eps
        self.variant = variant

    def attribute(
        self,
        inputs: Any,
        *,
        baselines: Any = None,
        target: Any = None,
        forward_args: Any = None,
        chunk_size: ChunkSize = "auto",
        return_delta: bool = True,
        custom_attribution_func: Callable[..., Any] | None = None,
        show_progress: bool = False,
    ) -> Explanation:
        """DeepLift attributions of the target.

        Parameters
        ----------
        inputs : Tensor or tuple/dict of Tensor, each ``(N, ...)``
        baselines : None (zeros), a number, a tensor broadcastable to each input (per example
            ``(N, ...)`` or shared ``(1, ...)`` / ``(...)``), or one such value per input
        target : which output to explain (see :mod:`whybox.core.targets`)
        forward_args : extra model arguments (tensors with batch dimension ``N`` are split
            with the batch)
        chunk_size : input/baseline *pairs* are evaluated ``chunk_size // 2`` at a time (each
            pair is two rows); ``"auto"`` picks for throughput
        return_delta : also return the convergence delta (free: no extra forward)
        custom_attribution_func : ``f(multipliers)``, ``f(multipliers, inputs)`` or
            ``f(multipliers, inputs, baselines)``, each argument a tuple with one ``(k, ...)``
            tensor per input (called once per chunk of ``k`` examples), returning one
            attribution tensor per input; replaces ``(x - b) * multipliers``

        Returns
        -------
        Explanation
            ``attributions`` shaped like ``inputs`` (like the layer with ``layer``); ``delta``
            of shape ``(N,)``.
        """
        call, custom = self._prepare(
            inputs,
            target,
            forward_args,
            chunk_size,
            return_delta,
            custom_attribution_func,
            show_progress,
        )
        refs = prepare_baselines(baselines, call.inputs, owner=call.owner).expanded(call.inputs)
        leaves, delta, layout = self._pairs(call, refs, 1, custom, return_delta)
        return self._finish(
            call, leaves, layout, delta, self._parameters(call, custom_attribution_func)
        )

    # -- shared by DeepLift and DeepLiftShap ----------------------------------------------

    def _prepare(
        self,
        inputs: Any,
        target: Any,
        forward_args: Any,
        chunk_size: ChunkSize,
        return_delta: bool,
        custom_attribution_func: Any,
        show_progress: bool,
    ) -> tuple[Call, tuple[Callable[..., Any], int] | None]:
        owner = type(self).__name__
        self._check_common()
        if not isinstance(self.model, nn.Module):
            fail(
                owner,
                "model",
                "an nn.Module (the gradients of its nonlinearity modules are replaced)",
                type(self.model).__name__,
                type_error=True,
                raw=True,
            )
        check_real(owner, "eps", self.eps, minimum=0.0)
        check_choice(owner, "variant", self.variant, ("rescale", "captum"))
        check_bool(owner, "return_delta", return_delta)
        custom = None
        if custom_attribution_func is not None:
            custom = (custom_attribution_func, _custom_arity(owner, custom_attribution_func))
        self._site()  # validates ``layer`` / ``attribute_to_layer_input`` early
        call = prepare_call(
            owner,
            self.model,
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
            # with a layer the inputs may be token ids (the references too)
            require_float=self.layer is None,
        )
        return call, custom

    def _finish(
        self,
        call: Call,
        leaves: tuple[Tensor, ...],
        layout: list[int] | None,
        delta: Tensor | None,
        parameters: dict[str, Any],
    ) -> Explanation:
        if layout is not None:
            return self._layer_result(call, leaves, layout, delta=delta, parameters=parameters)
        return self._result(call, leaves, delta=delta, parameters=parameters)

    def _layer_tap(self, site: Any, owner: str, values: list, layout: list) -> Callable:
        """A ``tap`` on the layer that also keeps the chunk's layer values and layout."""

        @contextmanager
        def tap() -> Iterator[Any]:
            with site.capture() as captured:
                yield captured
            if not captured.tensors or any(len(t) == 0 for t in captured.per_layer):
                fail(
                    owner,
                    "layer",
                    "a module that runs in the model's forward and returns tensors",
                    "a layer that was not called (or produced no tensor)",
                    raw=True,
                )
            values[:] = [t.detach() for t in captured.tensors]
            layout[:] = [len(t) for t in captured.per_layer]

        return tap

    def _parameters(self, call: Call, custom: Any) -> dict[str, Any]:
        return {
            "multiply_by_inputs": self.multiply_by_inputs,
            "eps": self.eps,
            "variant": self.variant,
            "custom_attribution_func": custom,
            "chunk_size": call.chunk_rows,
        }

    def _attributions(
        self,
        owner: str,
        multipliers: tuple[Tensor, ...],
        xs: tuple[Tensor, ...],
        bs: tuple[Tensor, ...],
        custom: tuple[Callable[..., Any], int] | None,
    ) -> tuple[Tensor, ...]:
        if custom is None:
            if self.multiply_by_inputs:
                return tuple((x - b) * m for x, b, m in zip(xs, bs, multipliers))
            return multipliers
        func, arity = custom
        result = func(*(multipliers, xs, bs)[:arity])
        if isinstance(result, Tensor):
            result = (result,)
        if not isinstance(result, (tuple, list)) or len(result) != len(xs):
            fail(
                owner,
                "custom_attribution_func",
                f"a callable returning a tuple of {len(xs)} tensor(s) shaped like the inputs",
                f"a callable returning {type(result).__name__}",
                raw=True,
            )
        for out, x in zip(result, xs):
            if not isinstance(out, Tensor) or out.shape != x.shape:
                fail(
                    owner,
                    "custom_attribution_func",
                    "a callable returning tensors shaped like the inputs "
                    f"({tuple(x.shape)} for a chunk)",
                    f"{type(out).__name__} {tuple(getattr(out, 'shape', ()))}",
                    raw=True,
                )
        return tuple(result)

    def _pairs(
        self,
        call: Call,
        refs: tuple[Tensor, ...],
        n_refs: int,
        custom: tuple[Callable[..., Any], int] | None,
        return_delta: bool,
    ) -> tuple[tuple[Tensor, ...], Tensor | None, list[int] | None]:
        """Run every (example, reference) pair through the rules.

        ``refs`` are ``(N, ...)`` per-example references when ``n_refs == 1`` or a
        distribution ``(n_refs, ...)`` paired with every example. Returns the attributions
        averaged over references, ``(N, ...)`` per input (per layer tensor with ``layer``),
        the per-pair delta ``(N * n_refs,)`` ordered example-major, and the layer layout
        (``None`` for input scope).
        """
        xs = call.tensors
        device = xs[0].device
        n_pairs = call.batch_size * n_refs
        site = self._site()
        # input scope: one total per input; layer scope: allocated from the first chunk
        totals = [torch.zeros_like(x) for x in xs] if site is None else []
        delta_dtype = xs[0].dtype if xs[0].is_floating_point() else torch.get_default_dtype()
        deltas = torch.zeros(n_pairs, dtype=delta_dtype, device=device) if return_delta else None
        chunk_rows = call.chunk_rows
        if self.variant == "captum" and any(type(m) is nn.Softmax for m in self.model.modules()):
            chunk_rows = 2 * n_pairs  # Captum's centring is over the whole batch
        rules, reset = _rules(self.eps, self.variant)
        dispatch: Any = rules
        tap = None
        layer_values: list[Tensor] = []
        layout: list[int] = []
        if site is not None:
            tap = self._layer_tap(site, call.owner, layer_values, layout)
            if not site.to_input:
                # Captum leaves the layer itself unhooked; its rule cannot change gradients
                # at its own output, but (variant "captum") it would change its neighbours'.
                skipped = {id(m) for m in site.layers}

                def dispatch(module: nn.Module) -> Any:
                    return None if id(module) in skipped else rules.get(type(module))

        current: dict[str, Any] = {}

        def build(start: int, stop: int) -> RowBatch:
            reset()
            pairs = torch.arange(start, stop, device=device)
            examples = pairs // n_refs
            references = examples if n_refs == 1 else pairs % n_refs
            x_rows = tuple(x.index_select(0, examples) for x in xs)
            b_rows = tuple(r.index_select(0, references).to(x.dtype) for r, x in zip(refs, xs))
            current.update(examples=examples, x=x_rows, b=b_rows)
            rows = tuple(torch.cat([x, b]) for x, b in zip(x_rows, b_rows))
            return RowBatch(rows, torch.cat([examples, examples]))

        def consume(start: int, stop: int, selected: Tensor, grads: Any) -> None:
            k = stop - start
            multipliers = tuple(g[:k] for g in grads)
            if site is None:
                x_rows, b_rows = current["x"], current["b"]
            else:  # the layer's values on the input rows and on the reference rows
                x_rows = tuple(v[:k] for v in layer_values)
                b_rows = tuple(v[k:] for v in layer_values)
                if not totals:
                    totals.extend(
                        torch.zeros(
                            (call.batch_size,) + tuple(v.shape[1:]), dtype=v.dtype, device=v.device
                        )
                        for v in x_rows
                    )
            attrs = self._attributions(call.owner, multipliers, x_rows, b_rows, custom)
            for total, attr in zip(totals, attrs):
                total.index_add_(0, current["examples"], attr.to(total.dtype))
            if deltas is not None:
                if selected.dim() != 1 or selected.shape[0] != 2 * k:
                    raise ValueError(
                        f"{call.owner} cannot compute a per-example convergence delta for a "
                        "model that does not return one value per row; pass return_delta=False"
                    )
                summed = sum(a.reshape(k, -1).sum(dim=1) for a in attrs)
                deltas[start:stop] = summed.to(deltas.dtype) - (selected[:k] - selected[k:])

        try:
            with module_rules(self.model, dispatch):
                evaluate(
                    call.evaluator,
                    n_items=n_pairs,
                    build=build,
                    consume=consume,
                    chunk_rows=chunk_rows,
                    rows_per_item=2,
                    grad=True,
                    tap=tap,
                    progress=call.progress,
                    description=call.owner,
                )
        finally:
            reset()  # drop references to this call's activations
            layer_values.clear()
        leaves = tuple(t if n_refs == 1 else t / n_refs for t in totals)
        return leaves, deltas, (list(layout) if site is not None else None)


@register("deeplift_shap")
class DeepLiftShap(DeepLift):
    """DeepLift against every reference of a distribution, averaged per example.

    Approximates SHAP values (Lundberg & Lee, 2017) under feature independence. Parameters
    as :class:`DeepLift`.
    """

    def attribute(
        self,
        inputs: Any,
        *,
        baselines: Any = None,
        target: Any = None,
        forward_args: Any = None,
        chunk_size: ChunkSize = "auto",
        return_delta: bool = True,
        custom_attribution_func: Callable[..., Any] | None = None,
        show_progress: bool = False,
    ) -> Explanation:
        """DeepLiftShap attributions of the target.

        Parameters
        ----------
        inputs : Tensor or tuple/dict of Tensor, each ``(N, ...)``
        baselines : the reference distribution, per input ``(n_refs, ...)`` (one example's
            shape or a number is a single reference; None is one all-zero reference), or a
            callable returning it; references of size 1 broadcast against the others
        target, forward_args, chunk_size, return_delta, custom_attribution_func :
            as :meth:`DeepLift.attribute` (``N * n_refs`` pairs are evaluated)

        Returns
        -------
        Explanation
            ``attributions`` shaped like ``inputs`` (mean over references); ``delta`` of
            shape ``(N * n_refs,)``, one per (example, reference) pair, example-major, as
            Captum reports it.
        """
        call, custom = self._prepare(
            inputs,
            target,
            forward_args,
            chunk_size,
            return_delta,
            custom_attribution_func,
            show_progress,
        )
        owner = call.owner
        refs = prepare_baselines(baselines, call.inputs, owner=owner, distribution=True).tensors
        n_refs = max(r.shape[0] for r in refs)
        if any(r.shape[0] not in (1, n_refs) for r in refs):
            fail(
                owner,
                "baselines",
                "reference distributions with the same number of references for every input",
                f"sizes {[r.shape[0] for r in refs]}",
                raw=True,
            )
        refs = tuple(r.expand((n_refs,) + tuple(x.shape[1:])) for r, x in zip(refs, call.tensors))
        leaves, delta, layout = self._pairs(call, refs, n_refs, custom, return_delta)
        parameters = self._parameters(call, custom_attribution_func)
        parameters["n_refs"] = n_refs
        return self._finish(call, leaves, layout, delta, parameters)
