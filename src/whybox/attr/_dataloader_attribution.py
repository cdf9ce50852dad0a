"""Feature ablation against a metric of a whole dataset (Captum 0.9's DataLoaderAttribution).

A metric is computed over every batch of a ``DataLoader`` -- by default the model's outputs
concatenated, or any ``reduce`` / ``to_metric`` pair (accuracy, recall, a mean loss) -- and
each feature group is attributed the drop in that metric when the group is replaced by its
baseline in *every* batch. With the default reduction and per-example outputs this equals
:class:`~whybox.attr.FeatureAblation` on the concatenated dataset with one shared mask.

Rules as in Captum 0.9: ``input_roles`` say what each element of a batch is (0: attribute
it, and pass it to the model; 1: pass it to the model; 2: neither, e.g. a label that only
``reduce`` reads -- Captum's docstring swaps 1 and 2, its code does this); ``baselines`` and
``feature_mask`` are given for the role-0 elements only, with a first dimension of 1
(broadcast to every batch); features are numbered ``0 .. max`` across all masks (default:
every scalar its own feature); the result has the metric's values, flattened, along the
first dimension (``(metric.numel(), *element.shape[1:])`` per element, or
``(metric.numel(), n_features)`` with ``return_input_shape=False``).

Differences from Captum, where Captum fails or wastes work: batches that are tuples work
(Captum 0.9 raises ``UnboundLocalError``); feature indices that no mask uses cost no
traversal (their attribution is 0, as in Captum); ablation replaces values
(``torch.where``) instead of ``x * mask + baseline * (1 - mask)``, so integer inputs with
integer baselines stay integers (a fractional baseline promotes them, as in Captum) and
infinite inputs do not turn into NaN; a default reduction of 0-d outputs
concatenates them; ``show_progress`` shows a bar over the traversals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from whybox.core.progress import progress

from ._assertion_errors import fail_assert
from ._base import Attribution
from ._perturbation import FeatureAblation

__all__ = ["DataLoaderAttribution", "InputRole", "SUPPORTED_METHODS"]

_OWNER = "DataLoaderAttribution.attribute"


class InputRole:
    """The role of each element of a batch (``input_roles``), as Captum numbers them."""

    #: attributed, and passed to the forward function
    need_attr = 0
    #: passed to the forward function, not attributed (e.g. an attention mask)
    need_forward = 1
    #: neither attributed nor passed to the forward function (e.g. a label ``reduce`` reads)
    no_forward = 2


#: the attribution classes DataLoaderAttribution accepts (exactly these types, as Captum)
SUPPORTED_METHODS = {FeatureAblation}


def _concat(accum: Tensor | None, output: Tensor, inputs: tuple[Any, ...]) -> Tensor:
    """The default ``reduce``: the outputs of every batch, concatenated along dim 0."""
    output = output.reshape(1) if isinstance(output, Tensor) and output.dim() == 0 else output
    return output if accum is None else torch.cat([accum, output])


def _as_tuple(batch: Any) -> tuple[tuple[Any, ...], bool]:
    """A batch as a tuple of elements, and whether it came as a sequence."""
    if isinstance(batch, (tuple, list)):
        return tuple(batch), True
    return (batch,), False


class _Plan:
    """The checked arguments of one call: roles, baselines, masks and the features."""

    def __init__(
        self,
        first: tuple[Any, ...],
        input_roles: Sequence[int] | None,
        baselines: Any,
        feature_mask: Any,
    ) -> None:
        if input_roles:
            roles = tuple(input_roles)
            if len(roles) != len(first):
                fail_assert(
                    _OWNER,
                    "input_roles",
                    f"one role per element of a batch ({len(first)})",
                    roles,
                )
            if any(role not in (0, 1, 2) for role in roles):
                fail_assert(_OWNER, "input_roles", "a tuple of 0, 1 and 2 (InputRole)", roles)
            if InputRole.need_attr not in roles:
                fail_assert(_OWNER, "input_roles", "a tuple with at least one 0 (need_attr)", roles)
        else:
            roles = (InputRole.need_attr,) * len(first)
        self.roles = roles
        attr_inputs = [x for x, role in zip(first, roles) if role == InputRole.need_attr]
        for x in attr_inputs:
            if not isinstance(x, Tensor):
                fail_assert(_OWNER, "dataloader", "batches whose role-0 elements are tensors", x)
        self.baselines = self._baselines(baselines, attr_inputs)
        self.masks = self._masks(feature_mask, attr_inputs)
        # which role-0 elements hold each feature: found once, so perturbing needs no
        # device round trip
        per_mask = [set(torch.unique(mask).tolist()) for mask in self.masks]
        present = sorted(set().union(*per_mask))
        if present and present[0] < 0:
            fail_assert(_OWNER, "feature_mask", "non-negative feature indices", present[0])
        self.holders = {f: {k for k, values in enumerate(per_mask) if f in values} for f in present}
        self._on_device: dict[tuple[int, torch.device], Tensor] = {}
        #: Captum numbers features 0 .. max over all masks
        self.n_features = present[-1] + 1 if present else 0
        self.present = present
        self.shapes = [tuple(x.shape[1:]) for x in attr_inputs]

    @staticmethod
    def _baselines(baselines: Any, attr_inputs: list[Tensor]) -> tuple[Any, ...]:
        if baselines is None:
            return tuple(False if x.dtype == torch.bool else 0 for x in attr_inputs)
        values = baselines if isinstance(baselines, tuple) else (baselines,)
        if len(values) != len(attr_inputs):
            fail_assert(
                _OWNER,
                "baselines",
                f"one baseline per role-0 element of a batch ({len(attr_inputs)})",
                baselines,
            )
        for i, value in enumerate(values):
            if isinstance(value, Tensor):
                if value.dim() == 0 or value.shape[0] != 1:
                    fail_assert(
                        _OWNER,
                        "baselines",
                        f"numbers or tensors with a first dimension of 1 (baselines[{i}])",
                        value,
                    )
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                fail_assert(_OWNER, "baselines", "numbers or tensors", value, type_error=True)
        return values

    @staticmethod
    def _masks(feature_mask: Any, attr_inputs: list[Tensor]) -> tuple[Tensor, ...]:
        if feature_mask is None:
            masks, start = [], 0
            for x in attr_inputs:
                count = int(x[0:1].numel())
                masks.append(start + torch.arange(count, device=x.device).reshape(x[0:1].shape))
                start += count
            return tuple(masks)
        values = feature_mask if isinstance(feature_mask, tuple) else (feature_mask,)
        if len(values) != len(attr_inputs):
            fail_assert(
                _OWNER,
                "feature_mask",
                f"one mask per role-0 element of a batch ({len(attr_inputs)})",
                feature_mask,
            )
        for i, mask in enumerate(values):
            if not isinstance(mask, Tensor) or mask.is_floating_point() or mask.is_complex():
                fail_assert(_OWNER, "feature_mask", "integer tensors", mask, type_error=True)
            if mask.dim() == 0 or mask.shape[0] != 1:
                fail_assert(
                    _OWNER,
                    "feature_mask",
                    f"tensors with a first dimension of 1 (feature_mask[{i}])",
                    mask,
                )
        return tuple(values)

    def perturb(self, batch: tuple[Any, ...], feature: int | None) -> tuple[Any, ...]:
        """``batch`` with ``feature`` replaced by its baseline in every role-0 element."""
        if feature is None:
            return batch
        out, k = [], -1
        for x, role in zip(batch, self.roles):
            if role == InputRole.need_attr:
                k += 1
            if role != InputRole.need_attr or k not in self.holders[feature]:
                out.append(x)
                continue
            baseline = self.baselines[k]
            # a fractional baseline of an integer element promotes it (as Captum's
            # arithmetic does) rather than being truncated into a different baseline
            dtype = torch.result_type(x, baseline)
            if isinstance(baseline, Tensor):
                baseline = baseline.to(device=x.device, dtype=dtype)
            chosen = self._mask(k, x.device) == feature
            out.append(torch.where(chosen, baseline, x.to(dtype)))
        return tuple(out)

    def _mask(self, k: int, device: torch.device) -> Tensor:
        key = (k, device)
        if key not in self._on_device:
            self._on_device[key] = self.masks[k].to(device)
        return self._on_device[key]

    def forward_inputs(self, batch: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(x for x, role in zip(batch, self.roles) if role != InputRole.no_forward)

    def to_input_shape(self, unique: Tensor) -> tuple[Tensor, ...]:
        """``(P, n_features)`` attributions spread over each role-0 element's mask."""
        out = []
        for mask, shape in zip(self.masks, self.shapes):
            index = mask.to(unique.device).expand(1, *shape)[0]
            out.append(unique[:, index])
        return tuple(out)


class DataLoaderAttribution(Attribution):
    """Feature ablation of a metric computed over a whole ``DataLoader`` (Captum-compatible).

    Parameters
    ----------
    attr_method : FeatureAblation
        A :class:`~whybox.attr.FeatureAblation` of the model (exactly that class, as in
        Captum); its ``forward_func`` is called on every (perturbed) batch.

    Raises
    ------
    TypeError
        (also ``AssertionError``, as Captum) ``attr_method`` is not a FeatureAblation.

    Notes
    -----
    See the module notes for the rules and the differences from Captum 0.9.
    """

    def __init__(self, attr_method: Attribution) -> None:
        if type(attr_method) not in SUPPORTED_METHODS:
            fail_assert(
                "DataLoaderAttribution",
                "attr_method",
                "a whybox.attr.FeatureAblation instance",
                type(attr_method).__name__,
                type_error=True,
                raw=True,
            )
        super().__init__(attr_method.forward_func)
        self.attr_method = attr_method

    def attribute(
        self,
        dataloader: Iterable[Any],
        input_roles: tuple[int, ...] | None = None,
        baselines: Any = None,
        feature_mask: Tensor | tuple[Tensor, ...] | None = None,
        reduce: Callable[..., Any] | None = None,
        to_metric: Callable[[Any], Tensor] | None = None,
        perturbations_per_pass: int = 1,
        show_progress: bool = False,
        return_input_shape: bool = True,
    ) -> Tensor | tuple[Tensor, ...]:
        """Attribute a dataset-wide metric to feature groups.

        Parameters
        ----------
        dataloader : DataLoader or iterable
            Re-iterable; every batch is a tensor or a tuple / list of the same length.
        input_roles : tuple of int, optional
            One :class:`InputRole` per batch element (0: attributed and passed to the
            model, 1: passed to the model only, 2: neither). Default: all 0.
        baselines : number, Tensor or tuple, optional
            One per role-0 element: a number or a tensor of first dimension 1. Default 0.
        feature_mask : Tensor or tuple of Tensor, optional
            One integer mask per role-0 element, first dimension 1, broadcastable to the
            element; features numbered from 0 across all masks. Default: one feature per
            scalar.
        reduce : callable, optional
            ``reduce(accum, output, batch) -> accum`` over the batches, ``accum`` starting
            at ``None``; ``batch`` is the (perturbed) tuple of every element. Default:
            concatenate the outputs.
        to_metric : callable, optional
            ``to_metric(accum) -> Tensor``, the metric attributed. Default: ``accum``.
        perturbations_per_pass : int
            Perturbations evaluated per traversal of the dataloader (each keeps its own
            ``accum`` until the traversal ends).
        show_progress : bool
            Show a progress bar over the traversals.
        return_input_shape : bool
            Spread the attributions over the role-0 elements' shapes (default), or return
            one ``(metric.numel(), n_features)`` tensor.

        Returns
        -------
        Tensor or tuple of Tensor
            ``(metric.numel(), *element.shape[1:])`` per role-0 element (a tuple when the
            batches are tuples or lists), or the ``(metric.numel(), n_features)`` table.

        Raises
        ------
        ValueError, TypeError
            (also ``AssertionError``, as Captum) Bad roles, baselines, masks or metrics.
        """
        if isinstance(perturbations_per_pass, bool) or not isinstance(perturbations_per_pass, int):
            fail_assert(_OWNER, "perturbations_per_pass", "an int >= 1", perturbations_per_pass)
        if perturbations_per_pass < 1:
            fail_assert(_OWNER, "perturbations_per_pass", "an int >= 1", perturbations_per_pass)
        try:
            first_batch = next(iter(dataloader))
        except StopIteration:
            fail_assert(_OWNER, "dataloader", "a dataloader with at least one batch", "none")
        first, is_tuple = _as_tuple(first_batch)
        plan = _Plan(first, input_roles, baselines, feature_mask)
        reduce = _concat if reduce is None else reduce
        # Captum's traversals, which its users count: one for the first batch (above), one
        # for the unperturbed metric, then ceil(n_features / perturbations_per_pass)
        present = list(plan.present)
        passes: list[list[int | None]] = [[None]] + [
            present[i : i + perturbations_per_pass]
            for i in range(0, len(present), perturbations_per_pass)
        ]
        metrics: dict[int | None, Tensor] = {}
        bar = progress(len(passes), show_progress, "DataLoaderAttribution attribution", unit="pass")
        try:
            with torch.no_grad():
                for group in passes:
                    metrics.update(self._traverse(dataloader, plan, group, reduce, to_metric))
                    if bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        unique = self._differences(metrics, plan)
        if not return_input_shape:
            return unique
        spread = plan.to_input_shape(unique)
        return spread if is_tuple else spread[0]

    def _traverse(
        self,
        dataloader: Iterable[Any],
        plan: _Plan,
        group: list[int | None],
        reduce: Callable[..., Any],
        to_metric: Callable[[Any], Tensor] | None,
    ) -> dict[int | None, Tensor]:
        """One pass over the data: the metric under each perturbation of ``group``."""
        accums: list[Any] = [None] * len(group)
        for batch in dataloader:
            elements, _ = _as_tuple(batch)
            for j, feature in enumerate(group):
                perturbed = plan.perturb(elements, feature)
                output = self.forward_func(*plan.forward_inputs(perturbed))
                accums[j] = reduce(accums[j], output, perturbed)
        metrics = {}
        for feature, accum in zip(group, accums):
            metric = to_metric(accum) if to_metric is not None else accum
            if not isinstance(metric, Tensor):
                fail_assert(
                    _OWNER,
                    "to_metric" if to_metric is not None else "reduce",
                    "a function whose accumulated metric is a Tensor",
                    type(metric).__name__,
                    type_error=True,
                    raw=True,
                )
            metrics[feature] = metric
        return metrics

    @staticmethod
    def _differences(metrics: dict[int | None, Tensor], plan: _Plan) -> Tensor:
        """``(P, n_features)``: the unperturbed metric minus each perturbed one, flattened."""
        base = metrics[None]
        if base.dtype == torch.bool:
            base = base.to(torch.get_default_dtype())
        base = base.reshape(-1)
        unique = torch.zeros(base.shape[0], plan.n_features, dtype=base.dtype, device=base.device)
        for feature in plan.present:
            metric = metrics[feature].to(device=base.device, dtype=base.dtype).reshape(-1)
            if metric.shape != base.shape:
                fail_assert(
                    _OWNER,
                    "to_metric",
                    f"a metric of the same shape under every perturbation ({base.numel()} values)",
                    metrics[feature],
                )
            unique[:, feature] = base - metric
        return unique

    def attribute_future(self) -> Callable[..., Any]:
        """Not available for DataLoaderAttribution (as in Captum)."""
        raise NotImplementedError("attribute_future is not implemented for DataLoaderAttribution")
