"""The smallest attack parameter that makes a model wrong (Captum 0.9's
``MinParamPerturbation``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from enum import Enum
from numbers import Integral, Real
from typing import Any

import torch
from torch import Tensor

from whybox.attr._assertion_errors import fail_assert
from whybox.core.validation import check_bool, fail

from ._batching import as_args, concat, repeat_args, rows_of, run_model
from ._perturbation import Perturbation

__all__ = ["drange", "default_correct_fn", "MinParamPerturbationMode", "MinParamPerturbation"]

Number = int | float


def drange(min_val: Number, max_val: Number, step_val: Number) -> Generator[Number, None, None]:
    """``min_val, min_val + step_val, ...`` below ``max_val``, by repeated addition (so the
    values are exactly Captum's, floating-point accumulation included)."""
    curr = min_val
    while curr < max_val:
        yield curr
        curr += step_val


def default_correct_fn(model_out: Tensor, target: Any) -> bool:
    """Whether the argmax of every row of a 2-D ``model_out`` ``(N, C)`` is its target
    (an int, a list of ``N`` ints or a tensor)."""
    if not isinstance(model_out, Tensor) or model_out.ndim != 2:
        fail_assert(
            "MinParamPerturbation",
            "correct_fn",
            "given when the model output is not a 2D tensor (the default compares its "
            "argmax with the target)",
            model_out,
        )
    target_tensor = target if isinstance(target, Tensor) else torch.tensor(target)
    predicted = torch.argmax(model_out, dim=1)
    return bool((predicted == target_tensor.to(predicted.device)).all())


class MinParamPerturbationMode(Enum):
    """Search over the attack parameter: every value in order, or bisection."""

    LINEAR = 0
    BINARY = 1


class MinParamPerturbation:
    """Find the smallest value of an attack's parameter that makes the prediction wrong.

    Given an attack with one parameter (a noise level, an epsilon, a number of features
    removed), search ``arg_min, arg_min + arg_step, ...`` below ``arg_max`` for the smallest
    value at which ``correct_fn`` says the model is wrong.

    Parameters
    ----------
    forward_func : callable
        The model, called as ``forward_func(inputs, *additional_forward_args)``.
    attack : Perturbation or callable
        ``attack(inputs, **attack_kwargs, <arg_name>=value)``.
    arg_name : str
        The keyword of the searched parameter.
    arg_min, arg_max, arg_step : int or float
        Search range ``[arg_min, arg_max)`` and grid step; ``arg_max > arg_min + arg_step``.
    mode : {"linear", "binary"}
        ``"linear"`` tries every value in increasing order (the smallest wrong one is
        found for any attack); ``"binary"`` bisects, which assumes that once the model is
        wrong it stays wrong for larger values.
    num_attempts : int
        Attempts per value (> 1 for random attacks: any wrong attempt counts).
    preproc_fn : callable, optional
        Applied to the inputs before the model.
    apply_before_preproc : bool
        Attack the raw inputs (then preprocess) instead of the preprocessed ones.
    correct_fn : callable, optional
        ``correct_fn(model_out, **kwargs) -> bool``: whether the model is right. Default
        :func:`default_correct_fn` (every row's argmax equals ``target``).
    """

    def __init__(
        self,
        forward_func: Callable,
        attack: Callable | Perturbation,
        arg_name: str,
        arg_min: int | float,
        arg_max: int | float,
        arg_step: int | float,
        mode: str = "linear",
        num_attempts: int = 1,
        preproc_fn: Callable | None = None,
        apply_before_preproc: bool = False,
        correct_fn: Callable | None = None,
    ) -> None:
        owner = "MinParamPerturbation"
        if not callable(forward_func):
            fail(owner, "forward_func", "a callable", forward_func, type_error=True)
        if not callable(attack):
            fail(owner, "attack", "a Perturbation or a callable", attack, type_error=True)
        if not isinstance(arg_name, str):
            fail(owner, "arg_name", "a str (the attack's keyword)", arg_name, type_error=True)
        for name, value in (("arg_min", arg_min), ("arg_max", arg_max), ("arg_step", arg_step)):
            if isinstance(value, bool) or not isinstance(value, Real):
                fail(owner, name, "an int or a float", value, type_error=True)
        if not arg_max > arg_min + arg_step:
            # an AssertionError too: Captum asserts the range
            fail_assert(
                owner, "arg_max", f"greater than arg_min + arg_step ({arg_min + arg_step})", arg_max
            )
        if arg_step <= 0:
            fail_assert(owner, "arg_step", "> 0", arg_step)
        if (
            isinstance(num_attempts, bool)
            or not isinstance(num_attempts, Integral)
            or num_attempts < 1
        ):
            fail(owner, "num_attempts", "an int >= 1", num_attempts)
        if not isinstance(mode, str) or mode.upper() not in MinParamPerturbationMode.__members__:
            fail_assert(owner, "mode", "'linear' or 'binary'", mode)
        check_bool(owner, "apply_before_preproc", apply_before_preproc)
        for name, value in (("preproc_fn", preproc_fn), ("correct_fn", correct_fn)):
            if value is not None and not callable(value):
                fail(owner, name, "None or a callable", value, type_error=True)
        self.forward_func = forward_func
        self.attack = attack
        self.arg_name = arg_name
        self.arg_min = arg_min
        self.arg_max = arg_max
        self.arg_step = arg_step
        self.num_attempts = int(num_attempts)
        self.preproc_fn = preproc_fn
        self.apply_before_preproc = apply_before_preproc
        self.correct_fn: Callable = correct_fn if correct_fn is not None else default_correct_fn
        self.mode = MinParamPerturbationMode[mode.upper()]

    def _evaluate_batch(
        self,
        input_list: list,
        additional_forward_args: tuple | None,
        correct_fn_kwargs: dict[str, Any] | None,
        target: Any,
    ) -> int | None:
        """Index of the first batch in ``input_list`` the model gets wrong (``None``: all
        right), from one model call on the batches joined."""
        kwargs: dict[str, Any] = {}
        if target is not None:
            kwargs["target"] = target
        if correct_fn_kwargs is not None:
            kwargs.update(correct_fn_kwargs)
        if len(input_list) == 1:
            model_out = run_model(self.forward_func, input_list[0], additional_forward_args)
            return None if self.correct_fn(model_out, **kwargs) else 0
        joined = concat(input_list, owner="MinParamPerturbation.evaluate")
        model_out = run_model(self.forward_func, joined, additional_forward_args)
        start = 0
        for i, batch in enumerate(input_list):
            rows = rows_of(batch)
            if not self.correct_fn(model_out[start : start + rows], **kwargs):
                return i
            start += rows
        return None

    def _apply_attack(
        self, inputs: Any, preproc_input: Any, attack_kwargs: dict[str, Any] | None, param: Number
    ) -> tuple[Any, Any]:
        """``(model input, attack output)`` for one value of the parameter."""
        options = {**(attack_kwargs or {}), self.arg_name: param}
        if self.apply_before_preproc:
            attacked = self.attack(inputs, **options)
            return (self.preproc_fn(attacked) if self.preproc_fn else attacked), attacked
        attacked = self.attack(preproc_input, **options)
        return attacked, attacked

    def _linear_search(
        self,
        inputs: Any,
        preproc_input: Any,
        attack_kwargs: dict[str, Any] | None,
        additional_forward_args: tuple | None,
        expanded_additional_args: Any,
        correct_fn_kwargs: dict[str, Any] | None,
        target: Any,
        perturbations_per_eval: int,
    ) -> tuple[Any, Number | None]:
        """Every value in increasing order, ``perturbations_per_eval`` attempts per call."""
        input_list: list = []
        attacked_list: list = []
        params: list = []

        def first_wrong(args: Any) -> int | None:
            return self._evaluate_batch(input_list, args, correct_fn_kwargs, target)

        for param in drange(self.arg_min, self.arg_max, self.arg_step):
            for _ in range(self.num_attempts):
                model_input, attacked = self._apply_attack(
                    inputs, preproc_input, attack_kwargs, param
                )
                input_list.append(model_input)
                attacked_list.append(attacked)
                params.append(param)
                if len(input_list) == perturbations_per_eval:
                    wrong = first_wrong(expanded_additional_args)
                    if wrong is not None:
                        return attacked_list[wrong], params[wrong]
                    input_list, attacked_list, params = [], [], []
        if input_list:
            wrong = first_wrong(repeat_args(additional_forward_args, len(input_list)))
            if wrong is not None:
                return attacked_list[wrong], params[wrong]
        return None, None

    def _binary_search(
        self,
        inputs: Any,
        preproc_input: Any,
        attack_kwargs: dict[str, Any] | None,
        additional_forward_args: tuple | None,
        expanded_additional_args: Any,
        correct_fn_kwargs: dict[str, Any] | None,
        target: Any,
        perturbations_per_eval: int,
    ) -> tuple[Any, Number | None]:
        """Bisection on the grid of ``arg_step`` (Captum's search, step for step)."""
        min_range, max_range = self.arg_min, self.arg_max
        min_so_far: Number | None = None
        min_input = None
        while max_range > min_range:
            mid_step = ((max_range - min_range) // self.arg_step) // 2
            if mid_step == 0 and min_range + self.arg_step < max_range:
                mid_step = 1
            mid = min_range + (mid_step * self.arg_step)
            input_list: list = []
            attacked_list: list = []
            attack_success = False
            for i in range(self.num_attempts):
                model_input, attacked = self._apply_attack(
                    inputs, preproc_input, attack_kwargs, mid
                )
                input_list.append(model_input)
                attacked_list.append(attacked)
                if len(input_list) == perturbations_per_eval or i == self.num_attempts - 1:
                    args = expanded_additional_args
                    if len(input_list) != perturbations_per_eval:
                        args = repeat_args(additional_forward_args, len(input_list))
                    wrong = self._evaluate_batch(input_list, args, correct_fn_kwargs, target)
                    if wrong is not None:
                        attack_success = True
                        max_range = mid
                        if min_so_far is None or min_so_far > mid:
                            min_so_far = mid
                            min_input = attacked_list[wrong]
                        break
                    input_list, attacked_list = [], []
            if math.isclose(min_range, mid):
                break
            if not attack_success:
                min_range = mid
        return min_input, min_so_far

    def evaluate(
        self,
        inputs: Any,
        additional_forward_args: tuple | None = None,
        target: Any = None,
        perturbations_per_eval: int = 1,
        attack_kwargs: dict[str, Any] | None = None,
        correct_fn_kwargs: dict[str, Any] | None = None,
    ) -> tuple[Any, int | float | None]:
        """Search for the smallest parameter value at which the model is wrong.

        Parameters
        ----------
        inputs : Any
            A tensor ``(N, ...)`` (best with ``N = 1``: with the default ``correct_fn`` a
            batch is wrong as soon as one example is), a tuple of them, or anything
            ``preproc_fn`` and the attack accept.
        additional_forward_args : Any, optional
            Extra model arguments; tensors are repeated along dim 0 when several attempts
            share one model call.
        target : Any, optional
            Passed to ``correct_fn`` as ``target`` (required by the default).
        perturbations_per_eval : int
            Attempts per model call (> 1 needs tensor inputs).
        attack_kwargs, correct_fn_kwargs : dict, optional
            Fixed keyword arguments of the attack and of ``correct_fn``.

        Returns
        -------
        (perturbed inputs, value) or (None, None)
            The attack's output at the smallest value found and that value; ``(None,
            None)`` when the model stays right on the whole range.
        """
        owner = "MinParamPerturbation.evaluate"
        if (
            isinstance(perturbations_per_eval, bool)
            or not isinstance(perturbations_per_eval, Integral)
            or perturbations_per_eval < 1
        ):
            fail(owner, "perturbations_per_eval", "an int >= 1", perturbations_per_eval)
        args = as_args(additional_forward_args)
        expanded = repeat_args(args, perturbations_per_eval) if perturbations_per_eval > 1 else args
        preproc_input = self.preproc_fn(inputs) if self.preproc_fn else inputs
        search = (
            self._linear_search
            if self.mode is MinParamPerturbationMode.LINEAR
            else self._binary_search
        )
        return search(
            inputs,
            preproc_input,
            attack_kwargs,
            args,
            expanded,
            correct_fn_kwargs,
            target,
            perturbations_per_eval,
        )
