"""Model performance under a set of attacks, averaged over batches (Captum 0.9's
``AttackComparator``)."""

from __future__ import annotations

import warnings
from collections import namedtuple
from collections.abc import Callable
from numbers import Integral
from typing import Any, Generic, NamedTuple, TypeVar, Union

from torch import Tensor

from whybox.attr._stat import Max, Mean, Min
from whybox.attr._summarizer import Summarizer
from whybox.core.validation import ParameterError, check_bool, fail

from ._batching import as_args, concat, repeat_args, rows_of, run_model
from ._perturbation import Perturbation

__all__ = ["ORIGINAL_KEY", "MetricResultType", "AttackInfo", "agg_metric", "AttackComparator"]

#: the key of the unperturbed inputs' results
ORIGINAL_KEY = "Original"

MetricResultType = TypeVar("MetricResultType", float, Tensor, tuple[Union[float, Tensor], ...])  # noqa: UP007


class AttackInfo(NamedTuple):
    """An attack added to an :class:`AttackComparator` and how to run it."""

    attack_fn: Perturbation | Callable
    name: str
    num_attempts: int
    apply_before_preproc: bool
    attack_kwargs: dict[str, Any]
    additional_args: list[str]


def agg_metric(inp: Any) -> Any:
    """One batch's metric as one observation: tensors averaged over dim 0 (examples),
    tuples element by element, numbers unchanged."""
    if isinstance(inp, Tensor):
        return inp.mean(dim=0)
    if isinstance(inp, tuple):
        return tuple(agg_metric(elem) for elem in inp)
    return inp


class _DuplicateAttackError(ParameterError, RuntimeError):
    """An attack name already in use (Captum raises ``RuntimeError``)."""


class AttackComparator(Generic[MetricResultType]):
    """Compare a model's metric on inputs and on attacked / augmented inputs.

    Parameters
    ----------
    forward_func : callable
        The model, called as ``forward_func(inputs, *additional_forward_args)``.
    metric : callable
        ``metric(model_out, **kwargs) -> float | Tensor | tuple``: the keyword arguments
        given to :meth:`evaluate` are passed on. A tensor metric has one row per example
        (or a first dimension of 1 for the whole batch) and is averaged over dim 0 across
        batches; several metrics come as a tuple or a named tuple.
    preproc_fn : callable, optional
        Applied to the inputs before the model (attacks run before or after it, see
        :meth:`add_attack`).

    Attributes
    ----------
    attacks : dict of str to AttackInfo
    summary_results : dict of str to Summarizer
        Running means over the batches evaluated since construction or :meth:`reset`.
    metric_aggregator : callable
        Turns one batch's metric into one observation of the running means
        (:func:`agg_metric`).
    batch_stats, aggregate_stats : list of Stat classes
        Statistics over the attempts of one batch (``[Mean, Min, Max]``) and over batches
        (``[Mean]``).
    """

    def __init__(
        self,
        forward_func: Callable,
        metric: Callable[..., MetricResultType],
        preproc_fn: Callable | None = None,
    ) -> None:
        if not callable(forward_func):
            fail("AttackComparator", "forward_func", "a callable", forward_func, type_error=True)
        if not callable(metric):
            fail(
                "AttackComparator",
                "metric",
                "a callable(model_out, **kwargs)",
                metric,
                type_error=True,
            )
        if preproc_fn is not None and not callable(preproc_fn):
            fail(
                "AttackComparator", "preproc_fn", "None or a callable", preproc_fn, type_error=True
            )
        self.forward_func = forward_func
        self.metric: Callable = metric
        self.preproc_fn = preproc_fn
        self.attacks: dict[str, AttackInfo] = {}
        self.summary_results: dict[str, Summarizer] = {}
        self.metric_aggregator = agg_metric
        self.batch_stats = [Mean, Min, Max]
        self.aggregate_stats = [Mean]
        self.out_format: Any = None

    def add_attack(
        self,
        attack: Perturbation | Callable,
        name: str | None = None,
        num_attempts: int = 1,
        apply_before_preproc: bool = True,
        attack_kwargs: dict[str, Any] | None = None,
        additional_attack_arg_names: list[str] | None = None,
    ) -> None:
        """Add an attack to run in every :meth:`evaluate`.

        Parameters
        ----------
        attack : Perturbation or callable
            ``attack(inputs, **per_batch_args, **attack_kwargs)`` returns perturbed inputs
            (a whybox / Captum attack, a torchvision transform, any function).
        name : str, optional
            Key of its results; default the attack's class name. Must be unique.
        num_attempts : int
            Times to run it per batch (> 1 for random attacks: mean, min and max over
            the attempts are reported).
        apply_before_preproc : bool
            Attack the raw inputs (then preprocess) or the preprocessed ones.
        attack_kwargs : dict, optional
            Fixed keyword arguments of the attack.
        additional_attack_arg_names : list of str, optional
            Keyword arguments of :meth:`evaluate` that are also passed to the attack
            (per-batch values such as ``target``).

        Raises
        ------
        RuntimeError
            (also ``ValueError``) when ``name`` is already used.
        """
        owner = "AttackComparator.add_attack"
        if not callable(attack):
            fail(owner, "attack", "a Perturbation or a callable", attack, type_error=True)
        if name is None:
            name = attack.__class__.__name__
        if (
            isinstance(num_attempts, bool)
            or not isinstance(num_attempts, Integral)
            or num_attempts < 1
        ):
            fail(owner, "num_attempts", "an int >= 1", num_attempts)
        check_bool(owner, "apply_before_preproc", apply_before_preproc)
        if name in self.attacks:
            message = (
                f"The 'name' parameter of {owner} must be a name no other attack has. "
                f"Got {name!r} (cannot add attack with same name as existing attack)."
            )
            raise _DuplicateAttackError(message, parameter="name")
        self.attacks[name] = AttackInfo(
            attack_fn=attack,
            name=name,
            num_attempts=int(num_attempts),
            apply_before_preproc=apply_before_preproc,
            attack_kwargs={} if attack_kwargs is None else attack_kwargs,
            additional_args=[]
            if additional_attack_arg_names is None
            else additional_attack_arg_names,
        )

    def _format_summary(self, summary: dict | list[dict]) -> dict[str, MetricResultType]:
        """A summary as ``{stat: value}``; a tuple metric's list of per-element summaries
        becomes ``{stat: tuple}`` (the metric's named tuple type when it had one)."""
        if isinstance(summary, dict):
            return summary
        summary_dict: dict[str, Any] = {}
        for key in summary[0]:
            summary_dict[key] = tuple(s[key] for s in summary)
            if self.out_format:
                summary_dict[key] = self.out_format(*summary_dict[key])
        return summary_dict

    def _update_out_format(self, out_metric: Any) -> None:
        if not self.out_format and isinstance(out_metric, tuple) and hasattr(out_metric, "_fields"):
            self.out_format = namedtuple(type(out_metric).__name__, out_metric._fields)  # noqa: PYI024

    def _evaluate_batch(
        self,
        input_list: list[Any],
        additional_forward_args: tuple | None,
        key_list: list[str],
        batch_summarizers: dict[str, Summarizer],
        metric_kwargs: dict[str, Any],
    ) -> None:
        """One model call on the batches of ``input_list`` joined; each batch's rows of the
        output go to the metric and to its key's summarizer."""
        if len(input_list) == 1:
            model_out = run_model(self.forward_func, input_list[0], additional_forward_args)
            self._record(key_list[0], model_out, batch_summarizers, metric_kwargs)
            return
        joined = concat(input_list, owner="AttackComparator.evaluate")
        model_out = run_model(self.forward_func, joined, additional_forward_args)
        start = 0
        for batch, key in zip(input_list, key_list):
            rows = rows_of(batch)
            self._record(key, model_out[start : start + rows], batch_summarizers, metric_kwargs)
            start += rows

    def _record(
        self, key: str, model_out: Any, summarizers: dict[str, Summarizer], kwargs: dict
    ) -> None:
        out_metric = self.metric(model_out, **kwargs)
        self._update_out_format(out_metric)
        summarizers[key].update(out_metric)

    def evaluate(
        self,
        inputs: Any,
        additional_forward_args: object | None = None,
        perturbations_per_eval: int = 1,
        **kwargs: Any,
    ) -> dict[str, MetricResultType | dict[str, MetricResultType]]:
        """The metric on ``inputs`` and on each attack's perturbed inputs, for this batch.

        Parameters
        ----------
        inputs : Any
            A tensor ``(N, ...)``, a tuple of them, or anything ``preproc_fn`` and the
            attacks accept.
        additional_forward_args : Any, optional
            Extra model arguments after the (preprocessed) inputs; tensors are repeated
            along dim 0 when several perturbations share one model call.
        perturbations_per_eval : int
            Batches (the original and the perturbed ones) per model call; > 1 needs
            (preprocessed) inputs that are tensors or tuples of tensors.
        **kwargs
            Passed to the metric, and to the attacks that name them in
            ``additional_attack_arg_names``.

        Returns
        -------
        dict
            ``{"Original": metric, name: {"mean": metric}}``, with ``"min"`` and ``"max"``
            beside ``"mean"`` for attacks with ``num_attempts > 1``; a metric is what
            ``metric`` returns averaged over the attempts (the same form).
        """
        owner = "AttackComparator.evaluate"
        if (
            isinstance(perturbations_per_eval, bool)
            or not isinstance(perturbations_per_eval, Integral)
            or perturbations_per_eval < 1
        ):
            fail(owner, "perturbations_per_eval", "an int >= 1", perturbations_per_eval)
        args = as_args(additional_forward_args)
        per_call_args = (
            repeat_args(args, perturbations_per_eval) if perturbations_per_eval > 1 else args
        )
        preproc_input = self.preproc_fn(inputs) if self.preproc_fn is not None else inputs

        input_list = [preproc_input]
        key_list = [ORIGINAL_KEY]
        batch_summarizers = {ORIGINAL_KEY: Summarizer([Mean()])}
        if ORIGINAL_KEY not in self.summary_results:
            self.summary_results[ORIGINAL_KEY] = Summarizer([s() for s in self.aggregate_stats])

        def flush_if_full() -> None:
            # a full group of perturbations_per_eval batches goes through the model at once
            if len(input_list) == perturbations_per_eval:
                self._evaluate_batch(input_list, per_call_args, key_list, batch_summarizers, kwargs)
                input_list.clear()
                key_list.clear()

        flush_if_full()
        for attack in self.attacks.values():
            stats = [s() for s in self.batch_stats] if attack.num_attempts > 1 else [Mean()]
            batch_summarizers[attack.name] = Summarizer(stats)
            attack_args = {}
            for key in attack.additional_args:
                if key not in kwargs:
                    warnings.warn(
                        f"Additional sample arg {key} not provided for {attack.name}",
                        stacklevel=2,
                    )
                else:
                    attack_args[key] = kwargs[key]
            for _ in range(attack.num_attempts):
                if attack.apply_before_preproc:
                    attacked = attack.attack_fn(inputs, **attack_args, **attack.attack_kwargs)
                    if self.preproc_fn:
                        attacked = self.preproc_fn(attacked)
                else:
                    attacked = attack.attack_fn(
                        preproc_input, **attack_args, **attack.attack_kwargs
                    )
                input_list.append(attacked)
                key_list.append(attack.name)
                flush_if_full()
        if input_list:
            self._evaluate_batch(
                input_list, repeat_args(args, len(input_list)), key_list, batch_summarizers, kwargs
            )
        return self._parse_and_update_results(batch_summarizers)

    def _parse_and_update_results(
        self, batch_summarizers: dict[str, Summarizer]
    ) -> dict[str, MetricResultType | dict[str, MetricResultType]]:
        """This batch's results, added to the running means of :attr:`summary_results`."""
        original = self._format_summary(batch_summarizers[ORIGINAL_KEY].summary)["mean"]
        results: dict[str, Any] = {ORIGINAL_KEY: original}
        self.summary_results[ORIGINAL_KEY].update(self.metric_aggregator(original))
        for attack in self.attacks.values():
            attack_results = self._format_summary(batch_summarizers[attack.name].summary)
            results[attack.name] = attack_results
            if len(attack_results) == 1:
                # one attempt: the running mean is keyed by the attack's name
                keys = {next(iter(attack_results)): attack.name}
            else:
                keys = {key: f"{attack.name} {key.title()} Attempt" for key in attack_results}
            for key, summary_key in keys.items():
                if summary_key not in self.summary_results:
                    self.summary_results[summary_key] = Summarizer(
                        [s() for s in self.aggregate_stats]
                    )
                self.summary_results[summary_key].update(
                    self.metric_aggregator(attack_results[key])
                )
        return results

    def summary(self) -> dict[str, dict[str, MetricResultType]]:
        """Running means over the batches evaluated since construction or :meth:`reset`.

        Returns
        -------
        dict
            ``{key: {"mean": metric}}`` for ``"Original"`` and each attack (keys
            ``"<name> Mean Attempt"``, ``"<name> Min Attempt"`` and ``"<name> Max
            Attempt"`` for attacks with ``num_attempts > 1``). Each batch counts once;
            its tensor metrics are first averaged over dim 0 (:attr:`metric_aggregator`).
        """
        return {
            key: self._format_summary(summarizer.summary)
            for key, summarizer in self.summary_results.items()
        }

    def reset(self) -> None:
        """Forget the batches evaluated so far (the running means of :meth:`summary`)."""
        self.summary_results = {}
