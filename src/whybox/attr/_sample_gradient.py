"""Per-example parameter gradients in one backward pass (Captum 0.9's
``captum._utils.sample_gradient`` and the Jacobian helpers of ``captum._utils.gradient``).

For ``nn.Linear`` and ``nn.Conv2d`` the gradient of a batch's summed loss with respect to the
weight is a sum over examples of (output gradient) x (input activation) products. Keeping
each module's input (a forward hook) and its output gradient (a hook on the output tensor)
gives every example's term separately, from the one backward pass that computes the sum:
``param.sample_grad`` is ``(N,) + param.shape``. Influence methods (TracIn) use this to
score training examples one by one without N backward passes.

The output gradient is taken with a tensor hook on the module's output rather than a module
backward hook: it sees the same gradient (the sum over the output's uses), works when an
in-place op follows the module, and needs no gradient on the model's inputs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._assertion_errors import DropInValueError

__all__ = [
    "LossMode",
    "SUPPORTED_MODULES",
    "SampleGradientWrapper",
    "conv2d_param_grads",
    "linear_param_grads",
    "_compute_jacobian_wrt_params",
    "_compute_jacobian_wrt_params_with_sample_wise_trick",
    "_extract_parameters_from_layers",
]


def _reset_sample_grads(module: nn.Module) -> None:
    """Set the module's ``weight`` (and ``bias``) ``sample_grad`` back to 0."""
    module.weight.sample_grad = 0  # type: ignore[union-attr]
    if module.bias is not None:
        module.bias.sample_grad = 0  # type: ignore[union-attr]


def _accumulate(param: Tensor, value: Tensor) -> None:
    """``param.sample_grad += value`` (a parameter without one starts from 0)."""
    param.sample_grad = getattr(param, "sample_grad", 0) + value  # type: ignore[attr-defined]


def linear_param_grads(
    module: nn.Module, activation: Tensor, gradient_out: Tensor, reset: bool = False
) -> None:
    """Add each example's ``nn.Linear`` parameter gradients to ``param.sample_grad``.

    Parameters
    ----------
    module : nn.Linear
    activation : Tensor, shape ``(N, ..., in_features)``
        The module's input.
    gradient_out : Tensor, shape ``(N, ..., out_features)``
        The gradient of the loss with respect to its output.
    reset : bool
        Start from 0 instead of adding to the current ``sample_grad``.

    Notes
    -----
    Middle dimensions (a sequence) are summed over: ``weight.sample_grad[n]`` is
    ``sum_t gradient_out[n, t]^T activation[n, t]``, shape ``(N, out, in)``.
    """
    if reset:
        _reset_sample_grads(module)
    n = activation.shape[0]
    grad = gradient_out.reshape(n, -1, gradient_out.shape[-1])
    act = activation.reshape(n, -1, activation.shape[-1]).to(grad.dtype)
    _accumulate(module.weight, torch.bmm(grad.transpose(1, 2), act))
    if module.bias is not None:
        _accumulate(module.bias, grad.sum(dim=1))


def _conv_input(module: nn.Conv2d, activation: Tensor) -> tuple[Tensor, Any]:
    """The input as the convolution saw it and the padding still to apply: non-zero
    padding modes pad first (as the module's forward does), string paddings resolved."""
    if module.padding_mode != "zeros":
        padded = F.pad(
            activation,
            module._reversed_padding_repeated_twice,  # the module's own pad amounts
            mode=module.padding_mode,
        )
        return padded, 0
    padding = module.padding
    if padding == "valid":
        return activation, 0
    if padding == "same":
        # total padding per side: dilation * (kernel - 1), the extra one on the right/bottom
        totals = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size)]
        if all(t % 2 == 0 for t in totals):
            return activation, tuple(t // 2 for t in totals)
        pad = []
        for total in reversed(totals):
            pad += [total // 2, total - total // 2]
        return F.pad(activation, pad), 0
    return activation, padding


def conv2d_param_grads(
    module: nn.Module, activation: Tensor, gradient_out: Tensor, reset: bool = False
) -> None:
    """Add each example's ``nn.Conv2d`` parameter gradients to ``param.sample_grad``.

    Parameters
    ----------
    module : nn.Conv2d
        Any stride, dilation, groups, padding (numbers, ``"valid"``, ``"same"``) and
        padding mode.
    activation : Tensor, shape ``(N, C_in, H, W)``
    gradient_out : Tensor, shape ``(N, C_out, H_out, W_out)``
    reset : bool
        Start from 0 instead of adding to the current ``sample_grad``.
    """
    if reset:
        _reset_sample_grads(module)
    conv: nn.Conv2d = module  # type: ignore[assignment]
    n = activation.shape[0]
    source, padding = _conv_input(conv, activation)
    # (N, C_in * kh * kw, L): every output position's receptive field as a column
    columns = F.unfold(
        source.to(gradient_out.dtype),
        conv.kernel_size,
        dilation=conv.dilation,
        padding=padding,
        stride=conv.stride,
    )
    groups = conv.groups
    grad = gradient_out.reshape(n, groups, conv.out_channels // groups, -1)
    columns = columns.reshape(n, groups, -1, columns.shape[-1])
    weight = torch.einsum("ngol,ngkl->ngok", grad, columns)
    _accumulate(conv.weight, weight.reshape((n,) + tuple(conv.weight.shape)))
    if conv.bias is not None:
        _accumulate(conv.bias, gradient_out.reshape(n, conv.out_channels, -1).sum(dim=2))


#: the modules whose per-example parameter gradients are known, and how
SUPPORTED_MODULES: dict[type[nn.Module], Callable[..., None]] = {
    nn.Conv2d: conv2d_param_grads,
    nn.Linear: linear_param_grads,
}


class LossMode(Enum):
    """How the loss reduced over the batch: per-example gradients of a mean are ``N``
    times the example's share of the batch gradient."""

    SUM = 0
    MEAN = 1


def _grad_fn_of(module: nn.Module) -> Callable[..., None] | None:
    for cls in type(module).__mro__:
        if cls in SUPPORTED_MODULES:
            return SUPPORTED_MODULES[cls]
    return None


class SampleGradientWrapper:
    """Per-example gradients of the parameters of a model's ``nn.Linear`` / ``nn.Conv2d``
    modules from one backward pass.

    Parameters
    ----------
    model : nn.Module
    layer_modules : list of nn.Module, optional
        Only these modules (``None``: every supported module of ``model``).

    Examples
    --------
    >>> wrapper = SampleGradientWrapper(model)
    >>> wrapper.add_hooks()
    >>> wrapper.compute_param_sample_gradients(loss_fn(model(x), y), loss_mode="mean")
    >>> model.fc.weight.sample_grad.shape   # (N, out, in)
    >>> wrapper.remove_hooks()
    """

    def __init__(self, model: Any, layer_modules: list[nn.Module] | None = None) -> None:
        self.model = model
        self.hooks_added = False
        self.activation_dict: defaultdict[nn.Module, list[Tensor]] = defaultdict(list)
        self.gradient_dict: defaultdict[nn.Module, list[Tensor]] = defaultdict(list)
        self.forward_hooks: list[torch.utils.hooks.RemovableHandle] = []
        self.backward_hooks: list[Any] = []
        self.layer_modules = layer_modules

    def add_hooks(self) -> None:
        """Start recording the supported modules' inputs and output gradients."""
        self.hooks_added = True
        self.model.apply(self._register_module_hooks)

    def _register_module_hooks(self, module: nn.Module) -> None:
        if self.layer_modules is not None and not any(module is m for m in self.layer_modules):
            return
        if _grad_fn_of(module) is not None:
            self.forward_hooks.append(module.register_forward_hook(self._forward_hook_fn))

    def _forward_hook_fn(self, module: nn.Module, module_input: Any, module_output: Any) -> None:
        activation = module_input[0] if isinstance(module_input, tuple) else module_input
        # a copy: the input may be changed in place after the module ran
        self.activation_dict[module].append(activation.detach().clone())
        output = module_output[0] if isinstance(module_output, tuple) else module_output
        if isinstance(output, Tensor) and output.requires_grad:
            gradients = self.gradient_dict[module]
            handle = output.register_hook(lambda grad: gradients.append(grad.detach()))
            self.backward_hooks.append(handle)

    def remove_hooks(self) -> None:
        """Remove every hook this wrapper added."""
        self.hooks_added = False
        for handle in self.forward_hooks + self.backward_hooks:
            handle.remove()
        self.forward_hooks = []
        self.backward_hooks = []

    def _reset(self) -> None:
        self.activation_dict = defaultdict(list)
        self.gradient_dict = defaultdict(list)

    def compute_param_sample_gradients(self, loss_blob: Tensor, loss_mode: str = "mean") -> None:
        """Backpropagate ``loss_blob`` and store each supported parameter's per-example
        gradients in ``param.sample_grad`` (``(N,) + param.shape``).

        Parameters
        ----------
        loss_blob : Tensor
            The loss (or outputs: their sum is backpropagated) of the recorded forward.
        loss_mode : {"mean", "sum"}
            How the loss reduced over the batch (case-insensitive).
        """
        if not isinstance(loss_mode, str) or loss_mode.upper() not in LossMode.__members__:
            raise DropInValueError(
                f"Provided loss mode {loss_mode} is not valid: 'loss_mode' must be 'sum' or 'mean'",
                parameter="loss_mode",
            )
        mode = LossMode[loss_mode.upper()]
        self.model.zero_grad()
        loss_blob.backward(gradient=torch.ones_like(loss_blob))
        for module, gradients in self.gradient_dict.items():
            activations = self.activation_dict[module]
            if len(activations) != len(gradients):
                raise DropInValueError(
                    "Number of saved activations do not match number of saved gradients: "
                    "several forwards ran without computing their gradients (or a reset)",
                    parameter="loss_blob",
                )
            grad_fn = _grad_fn_of(module)
            assert grad_fn is not None
            # backward visits the module's calls last first: pair the k-th forward with
            # the k-th gradient from the end
            for index, (act, grad) in enumerate(zip(activations, reversed(gradients))):
                scale = 1 if mode is LossMode.SUM else act.shape[0]
                grad_fn(module, act, grad * scale, reset=index == 0)
        self._reset()


_ONE_DIM = "Please ensure model output has at least one dimension."


def _extract_parameters_from_layers(layer_modules: Sequence[nn.Module] | None) -> list[Tensor]:
    """The parameters of ``layer_modules``, in order (an error when there are none)."""
    if layer_modules is None:
        return []
    parameters = [p for module in layer_modules for p in module.parameters()]
    if not parameters:
        raise DropInValueError(
            "No parameters are available for modules for provided input `layers`",
            parameter="layer_modules",
        )
    return parameters


def _loss_of(out: Tensor, labels: Any, loss_fn: Any) -> Tensor | None:
    return loss_fn(out, labels) if labels is not None and loss_fn is not None else None


def _compute_jacobian_wrt_params(
    model: nn.Module,
    inputs: tuple[Any, ...],
    labels: Tensor | None = None,
    loss_fn: Callable[..., Tensor] | None = None,
    layer_modules: list[nn.Module] | None = None,
) -> tuple[Tensor, ...]:
    """Each example's gradient of its output (or unreduced loss) with respect to the
    parameters, one backward per example.

    Parameters
    ----------
    model : nn.Module
    inputs : tuple
        Unpacked into ``model``; the batch dimension first.
    labels : Tensor, optional
    loss_fn : callable, optional
        With ``labels``: a loss with no reduction (``reduction="none"``), one value per
        example.
    layer_modules : list of nn.Module, optional
        Only these modules' parameters (``None``: ``model.parameters()``).

    Returns
    -------
    tuple of Tensor
        One per parameter, ``(N,) + param.shape``.
    """
    with torch.enable_grad():
        out = model(*inputs)
        if out.dim() == 0:
            raise DropInValueError(_ONE_DIM, parameter="model")
        loss = _loss_of(out, labels, loss_fn)
        if loss is not None:
            if hasattr(loss_fn, "reduction"):
                if loss_fn.reduction != "none":  # type: ignore[union-attr]
                    raise DropInValueError(
                        "Please ensure loss_fn.reduction is set to `none`", parameter="loss_fn"
                    )
            elif loss.dim() == 0 or out.shape[0] != loss.shape[0]:
                raise DropInValueError(
                    "Loss function is applying a reduction. Please ensure "
                    f"Output shape: {out.shape} and Loss shape: {loss.shape} are matching.",
                    parameter="loss_fn",
                )
            out = loss
        params = (
            list(model.parameters())
            if layer_modules is None
            else _extract_parameters_from_layers(layer_modules)
        )
        rows = [
            torch.autograd.grad(out[i], params, torch.ones_like(out[i]), retain_graph=True)
            for i in range(out.shape[0])
        ]
    return tuple(torch.stack(per_param) for per_param in zip(*rows))


def _compute_jacobian_wrt_params_with_sample_wise_trick(
    model: nn.Module,
    inputs: tuple[Any, ...],
    labels: Tensor | None = None,
    loss_fn: Callable[..., Tensor] | None = None,
    reduction_type: str | None = "sum",
    layer_modules: list[nn.Module] | None = None,
) -> tuple[Any, ...]:
    """:func:`_compute_jacobian_wrt_params` from ONE backward pass, for the parameters of
    ``nn.Linear`` / ``nn.Conv2d`` modules (see :class:`SampleGradientWrapper`).

    Parameters
    ----------
    model, inputs, labels, layer_modules
        As for :func:`_compute_jacobian_wrt_params`.
    loss_fn : callable, optional
        With ``labels``: a loss reducing over the batch by ``reduction_type``.
    reduction_type : {"sum", "mean"}
        How ``loss_fn`` reduces (``"sum"`` for raw outputs).

    Returns
    -------
    tuple of Tensor
        One per supported parameter (in ``model.parameters()`` order, or the layers'),
        ``(N,) + param.shape``.
    """
    with torch.enable_grad():
        inputs = tuple(x.clone() if isinstance(x, Tensor) else x for x in inputs)
        wrapper = SampleGradientWrapper(model, layer_modules)
        try:
            wrapper.add_hooks()
            out = model(*inputs)
            if out.dim() == 0:
                raise DropInValueError(_ONE_DIM, parameter="model")
            loss = _loss_of(out, labels, loss_fn)
            if loss is not None:
                reduction = getattr(loss_fn, "reduction", None)
                if reduction is not None:
                    if reduction == "none":
                        raise DropInValueError(
                            "Please ensure that loss_fn.reduction is set to `sum` or `mean`",
                            parameter="loss_fn",
                        )
                    if reduction != reduction_type:
                        raise DropInValueError(
                            f"loss_fn.reduction ({reduction}) does not match reduction type "
                            f"({reduction_type}). Please ensure they are matching.",
                            parameter="reduction_type",
                        )
                if out.shape == loss.shape:
                    raise DropInValueError(
                        "Please ensure custom loss function is applying either a sum or mean "
                        "reduction.",
                        parameter="loss_fn",
                    )
                if reduction_type not in ("sum", "mean"):
                    raise ValueError(
                        f"{reduction_type} is not a valid value for reduction_type. Must be "
                        "either 'sum' or 'mean'."
                    )
                out = loss
            # computed in this call only: a parameter's stale sample_grad from an earlier
            # call (another layer selection) is not returned
            supported = list(wrapper.activation_dict)
            fresh = {id(p) for m in supported for p in m.parameters(recurse=False)}
            wrapper.compute_param_sample_gradients(out, loss_mode=str(reduction_type))
            params = (
                model.parameters()
                if layer_modules is None
                else _extract_parameters_from_layers(layer_modules)
            )
            return tuple(p.sample_grad for p in params if id(p) in fresh)  # type: ignore[attr-defined]
        finally:
            wrapper.remove_hooks()
