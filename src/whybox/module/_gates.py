"""Stochastic gates: L0-regularised feature gates (Captum 0.9's ``captum.module``).

A gate multiplies an input element by ``z = clamp(s, 0, 1)`` where ``s`` is drawn from a
continuous distribution with learnable parameters (a "stretched" binary concrete, Louizos
et al. 2018, or a Gaussian, Yamada et al. 2020). The probability that ``z > 0`` has a
closed form in those parameters, so the expected number of open gates -- the L0 norm --
is differentiable and can be added to the training loss. In eval mode every gate is its
distribution's mean (deterministic).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from numbers import Integral, Real
from typing import Any

import torch
from torch import Tensor, nn

from whybox.attr._assertion_errors import fail_assert
from whybox.core.inputs import broadcasts_to
from whybox.core.validation import fail

__all__ = ["StochasticGatesBase", "BinaryConcreteStochasticGates", "GaussianStochasticGates"]

REDUCTIONS = ("none", "mean", "sum")


def _torch_empty(batch_size: int, n_gates: int, device: torch.device) -> Tensor:
    return torch.empty(batch_size, n_gates, device=device)


# a leaf for torch.fx: the batch size is a proxy when the module is traced
torch.fx.wrap(_torch_empty)


class StochasticGatesBase(nn.Module, ABC):
    """Gates one input tensor with sampled gate values and returns the L0 term.

    Subclasses choose the distribution: ``_sample_gate_values(batch_size)`` (``(batch,
    n_gates)``, before rectification), ``_get_gate_values()`` (the means, ``(n_gates,)``)
    and ``_get_gate_active_probs()`` (``P(gate > 0)``, ``(n_gates,)``).

    Parameters
    ----------
    n_gates : int
        Number of gates.
    mask : Tensor, optional
        Integer gate index of each input element, broadcastable to the input's shape
        (without or with a batch dimension), with values ``0 .. n_gates - 1`` (every gate
        used, so the largest is ``n_gates - 1``): elements with the same index share a
        gate. Default: one gate per element of an example.
    reg_weight : float
        Factor of the L0 term.
    reg_reduction : {"sum", "mean", "none"}
        L0 term: the sum of the gates' active probabilities, their mean, or each one.
    """

    mask: Tensor | None

    def __init__(
        self,
        n_gates: int,
        mask: Tensor | None = None,
        reg_weight: float = 1.0,
        reg_reduction: str = "sum",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        if isinstance(n_gates, bool) or not isinstance(n_gates, Integral) or n_gates < 1:
            fail(owner, "n_gates", "an int >= 1", n_gates)
        if mask is not None:
            mask = _check_mask(owner, mask, int(n_gates))
        if isinstance(reg_weight, bool) or not isinstance(reg_weight, Real):
            fail(owner, "reg_weight", "a float", reg_weight, type_error=True)
        if reg_reduction not in REDUCTIONS:
            # an AssertionError too: Captum asserts the reduction
            fail_assert(owner, "reg_reduction", f"one of {list(REDUCTIONS)}", reg_reduction)
        self.reg_reduction = reg_reduction
        self.n_gates = int(n_gates)
        self.register_buffer("mask", mask)
        self.reg_weight = reg_weight

    def forward(self, input_tensor: Tensor) -> tuple[Tensor, Tensor]:
        """Gate the input.

        Parameters
        ----------
        input_tensor : Tensor, shape ``(N, ...)``
            With one gate per element, each example has ``n_gates`` elements.

        Returns
        -------
        gated_input : Tensor, shape ``(N, ...)``
            ``input_tensor`` times each element's gate value (sampled in training mode,
            the gate means in eval mode), rectified to ``[0, 1]``.
        l0_reg : Tensor
            ``reg_weight`` times the reduced active probabilities: 0-d for ``"sum"`` and
            ``"mean"``, ``(n_gates,)`` for ``"none"``; add it to the loss.
        """
        if isinstance(input_tensor, torch.fx.Proxy):
            return self._traced_forward(input_tensor)
        owner = f"{type(self).__name__}.forward"
        if not isinstance(input_tensor, Tensor):
            fail(owner, "input_tensor", "a tensor", input_tensor, type_error=True)
        shape = tuple(input_tensor.shape)
        if self.mask is None:
            n_ele = self._get_numel_of_input(input_tensor)
            if n_ele != self.n_gates:
                fail_assert(
                    owner,
                    "input_tensor",
                    f"examples of n_gates ({self.n_gates}) elements when no mask is given",
                    f"examples of {n_ele} elements (shape {shape})",
                    raw=True,
                )
        elif not broadcasts_to(tuple(self.mask.shape), shape):
            fail(
                owner,
                "input_tensor",
                f"a tensor the gates' mask (shape {tuple(self.mask.shape)}) broadcasts to",
                input_tensor,
            )
        batch = shape[0]
        mask = self.mask
        per_example_mask = mask is not None and mask.dim() == len(shape) and mask.shape[0] != 1
        # hard-sigmoid rectification z = min(1, max(0, s))
        gates = torch.clamp(self._sample_gate_values(batch), min=0, max=1)
        if batch > 0 and (gates.stride(0) == 0 or batch == 1) and not per_example_mask:
            # every example has the same gates (eval mode: an expanded view): look them up
            # for one example and broadcast, instead of materialising (N, elements)
            per_element = gates[0] if mask is None else gates[0][self._element_gates(shape)]
            gated = input_tensor * per_element.reshape((1,) + shape[1:])
        else:
            if per_example_mask:
                # a mask with its own batch dimension: a gather per example
                gates = torch.gather(gates, 1, mask.expand(shape).reshape(batch, -1))
            elif mask is not None:
                gates = gates.index_select(1, self._element_gates(shape))
            gated = input_tensor * gates.reshape(shape)
        return gated, self._l0(self._get_gate_active_probs())

    def _element_gates(self, shape: tuple[int, ...]) -> Tensor:
        """The gate of each element of one example: ``(prod(shape[1:]),)`` long (for a
        mask without a per-example batch dimension)."""
        mask = self.mask
        if mask.dim() == len(shape):
            mask = mask[0]
        return mask.expand(shape[1:]).reshape(-1)

    def _traced_forward(self, input_tensor: Any) -> tuple[Any, Tensor]:
        # under torch.fx symbolic tracing shapes are proxies: no Python checks on them,
        # only traceable ops (Captum's formulation, which traces with a mask)
        input_size = input_tensor.size()
        batch = input_size[0]
        gates = torch.clamp(self._sample_gate_values(batch), min=0, max=1)
        if self.mask is not None:
            index = self.mask.expand_as(input_tensor).reshape(batch, -1)
            gates = torch.gather(gates, 1, index)
        return input_tensor * gates.reshape(input_size), self._l0(self._get_gate_active_probs())

    def _l0(self, probs: Tensor) -> Tensor:
        if self.reg_reduction == "sum":
            reduced = probs.sum()
        elif self.reg_reduction == "mean":
            reduced = probs.mean()
        else:
            reduced = probs
        return reduced * self.reg_weight

    def get_gate_values(self, clamp: bool = True) -> Tensor:
        """The gates' means, detached.

        Parameters
        ----------
        clamp : bool
            Rectify to ``[0, 1]`` (the values the gates take in eval mode); ``False``
            gives the raw means, which still rank gates beyond 0 or 1.

        Returns
        -------
        Tensor, shape ``(n_gates,)``
        """
        values = self._get_gate_values()
        if clamp:
            values = torch.clamp(values, min=0, max=1)
        return values.detach()

    def get_gate_active_probs(self) -> Tensor:
        """``P(gate > 0)`` of each gate, detached: Tensor ``(n_gates,)``."""
        return self._get_gate_active_probs().detach()

    @abstractmethod
    def _get_gate_values(self) -> Tensor:
        """The gates' means before rectification: Tensor ``(n_gates,)``."""

    @abstractmethod
    def _sample_gate_values(self, batch_size: int) -> Tensor:
        """Gate values for each example before rectification: Tensor ``(batch_size,
        n_gates)`` (samples in training mode, the means in eval mode)."""

    @abstractmethod
    def _get_gate_active_probs(self) -> Tensor:
        """``P(gate > 0)`` of each gate, differentiable: Tensor ``(n_gates,)``."""

    def _get_numel_of_input(self, input_tensor: Tensor) -> int:
        """Elements of one example of a batched input."""
        if input_tensor.dim() < 2:
            fail_assert(
                f"{type(self).__name__}.forward",
                "input_tensor",
                "a tensor with a batch dimension and at least one more",
                input_tensor,
            )
        return input_tensor[0].numel()


def _check_mask(owner: str, mask: Any, n_gates: int) -> Tensor:
    if not isinstance(mask, Tensor):
        fail(owner, "mask", "a tensor of gate indices", mask, type_error=True)
    if mask.is_floating_point() or mask.is_complex() or mask.dtype == torch.bool:
        fail(owner, "mask", "an integer tensor of gate indices", mask, type_error=True)
    if mask.numel() == 0:
        fail(owner, "mask", "a non-empty tensor of gate indices", mask)
    low, high = int(mask.min()), int(mask.max())
    if high != n_gates - 1 or low < 0:
        # an AssertionError too: Captum asserts the largest index
        fail_assert(
            owner,
            "mask",
            f"gate indices from 0 to n_gates - 1 ({n_gates - 1}), the largest used",
            f"indices from {low} to {high}",
            raw=True,
        )
    return mask.detach().clone().long()


class BinaryConcreteStochasticGates(StochasticGatesBase):
    """Gates drawn from a stretched binary concrete distribution (Louizos et al., 2018).

    ``s = sigmoid((logit(u) + log_alpha) / temperature)`` with ``u ~ U(eps, 1 - eps)``,
    stretched to ``s * (upper_bound - lower_bound) + lower_bound`` and rectified to
    ``[0, 1]``; eval mode uses ``sigmoid(log_alpha)`` stretched.
    ``P(gate > 0) = sigmoid(log_alpha - temperature * log(-lower_bound / upper_bound))``.

    Parameters
    ----------
    n_gates, mask, reg_weight, reg_reduction
        See :class:`StochasticGatesBase`.
    temperature : float
        In ``(0, 1)``; 0 would be a Bernoulli.
    lower_bound : float
        Stretch below 0 (< 0).
    upper_bound : float
        Stretch above 1 (> 1).
    eps : float
        Keeps ``u`` off 0 and 1.

    Attributes
    ----------
    log_alpha_param : nn.Parameter, shape ``(n_gates,)``
        Initialised from ``N(0, 0.01^2)`` with torch's global generator (as Captum).
    """

    def __init__(
        self,
        n_gates: int,
        mask: Tensor | None = None,
        reg_weight: float = 1.0,
        temperature: float = 2 / 3,
        lower_bound: float = -0.1,
        upper_bound: float = 1.1,
        eps: float = 1e-8,
        reg_reduction: str = "sum",
    ) -> None:
        owner = type(self).__name__
        super().__init__(n_gates, mask=mask, reg_weight=reg_weight, reg_reduction=reg_reduction)
        # checks are AssertionErrors too, as Captum's asserts
        if not _real(temperature) or not 0 < temperature < 1:
            fail_assert(owner, "temperature", "a float in (0, 1)", temperature)
        if not _real(lower_bound) or not lower_bound < 0:
            fail_assert(owner, "lower_bound", "a float < 0", lower_bound)
        if not _real(upper_bound) or not upper_bound > 1:
            fail_assert(owner, "upper_bound", "a float > 1", upper_bound)
        if not _real(eps) or not 0 <= eps < 0.5:
            fail(owner, "eps", "a float in [0, 0.5)", eps)
        # the same draw as Captum's nn.init.normal_ (global generator), same parameter name
        self.log_alpha_param = nn.Parameter(torch.empty(self.n_gates).normal_(mean=0.0, std=0.01))
        self.temperature = temperature
        self.lower_bound = lower_bound
        self.upper_bound = upper_bound
        self.eps = eps
        #: ``temperature * log(-lower_bound / upper_bound)``, fixed
        self.active_prob_offset: float = temperature * math.log(-lower_bound / upper_bound)

    def _sample_gate_values(self, batch_size: int) -> Tensor:
        """Stretched concrete samples (training) or the stretched means (eval):
        ``(batch_size, n_gates)``."""
        if self.training:
            u = _torch_empty(batch_size, self.n_gates, device=self.log_alpha_param.device)
            u.uniform_(self.eps, 1 - self.eps)
            s = torch.sigmoid((torch.logit(u) + self.log_alpha_param) / self.temperature)
        else:
            s = torch.sigmoid(self.log_alpha_param).expand(batch_size, self.n_gates)
        return s * (self.upper_bound - self.lower_bound) + self.lower_bound

    def _get_gate_values(self) -> Tensor:
        return (
            torch.sigmoid(self.log_alpha_param) * (self.upper_bound - self.lower_bound)
            + self.lower_bound
        )

    def _get_gate_active_probs(self) -> Tensor:
        return torch.sigmoid(self.log_alpha_param - self.active_prob_offset)

    @classmethod
    def _from_pretrained(
        cls, log_alpha_param: Tensor, *args: Any, **kwargs: Any
    ) -> BinaryConcreteStochasticGates:
        """Gates with trained ``log_alpha_param`` ``(n_gates,)``; other arguments as the
        constructor's (after ``n_gates``)."""
        if not isinstance(log_alpha_param, Tensor) or log_alpha_param.dim() != 1:
            fail_assert(cls.__name__, "log_alpha_param", "a 1-dimensional tensor", log_alpha_param)
        gates = cls(log_alpha_param.numel(), *args, **kwargs)
        gates.load_state_dict({"log_alpha_param": log_alpha_param}, strict=False)
        return gates


class GaussianStochasticGates(StochasticGatesBase):
    """Gates drawn from a Gaussian (Yamada et al., 2020).

    ``s = mu + N(0, std^2)`` rectified to ``[0, 1]``; eval mode uses ``mu``.
    ``P(gate > 0) = Phi(mu / std)``.

    Parameters
    ----------
    n_gates, mask, reg_weight, reg_reduction
        See :class:`StochasticGatesBase`.
    std : float
        Fixed standard deviation (> 0).

    Attributes
    ----------
    mu : nn.Parameter, shape ``(n_gates,)``
        Initialised from ``N(0.5, 0.01^2)`` with torch's global generator (as Captum).
    """

    def __init__(
        self,
        n_gates: int,
        mask: Tensor | None = None,
        reg_weight: float = 1.0,
        std: float = 0.5,
        reg_reduction: str = "sum",
    ) -> None:
        super().__init__(n_gates, mask=mask, reg_weight=reg_weight, reg_reduction=reg_reduction)
        if not _real(std) or not std > 0:
            fail_assert(type(self).__name__, "std", "a float > 0", std)
        # the same draw as Captum's nn.init.normal_ (global generator), same parameter name
        self.mu = nn.Parameter(torch.empty(self.n_gates).normal_(mean=0.5, std=0.01))
        self.std = std

    def _sample_gate_values(self, batch_size: int) -> Tensor:
        """``mu`` plus Gaussian noise (training) or ``mu`` (eval): ``(batch_size, n_gates)``."""
        if self.training:
            noise = _torch_empty(batch_size, self.n_gates, device=self.mu.device)
            noise.normal_(mean=0, std=self.std)
            return self.mu + noise
        return self.mu.expand(batch_size, self.n_gates)

    def _get_gate_values(self) -> Tensor:
        return self.mu

    def _get_gate_active_probs(self) -> Tensor:
        return 0.5 * (1 + torch.erf(self.mu / self.std / math.sqrt(2)))

    @classmethod
    def _from_pretrained(cls, mu: Tensor, *args: Any, **kwargs: Any) -> GaussianStochasticGates:
        """Gates with trained ``mu`` ``(n_gates,)``; other arguments as the constructor's
        (after ``n_gates``)."""
        if not isinstance(mu, Tensor):
            fail(cls.__name__, "mu", "a tensor", mu, type_error=True)
        gates = cls(mu.numel(), *args, **kwargs)
        gates.load_state_dict({"mu": mu}, strict=False)
        return gates


def _real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)
