"""What the app shows: models, class names, features and a dataset read lazily.

A :class:`Workspace` holds one set of models over one dataset. The dataset is any
iterable of batches (Captum Insights' ``Batch(inputs, labels, additional_args)`` or a
``(inputs, labels)`` pair); it is read only as far as the pages asked for, and model
predictions are computed per chunk of examples when a page (or a filter scanning for
matches) needs them, then cached. Nothing here computes attributions.

Thread safety: request handlers and the job worker share a workspace, so the reading,
the prediction cache and the filter cache sit behind one lock. Attributions run outside
the lock (they only read an example's cached tensors).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "Feature",
    "as_feature",
    "Example",
    "Prediction",
    "Page",
    "Workspace",
    "DatasetError",
    "FEATURE_KINDS",
    "to_device",
]

FEATURE_KINDS = ("image", "text", "general", "empty")
CORRECTNESS = ("all", "correct", "incorrect")


class DatasetError(RuntimeError):
    """The dataset (or a transform / score function given with it) misbehaved.

    This is the workspace owner's error, not the browser's: the API answers it with a
    500 carrying this message.
    """


# -- features ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Feature:
    """One model input as the app shows it.

    Parameters
    ----------
    name : str
        Shown above the view ("Photo", "Review", "Measurements").
    kind : {"image", "text", "general", "empty"}
        How the input is drawn: an overlay on the picture, highlighted tokens, or a bar
        per column (``empty`` inputs are passed to the model but not shown).
    input_transforms : sequence of callable
        Applied in order to one example (its batch dimension removed) to give the
        model's input, e.g. normalisation or an embedding lookup.
    baseline_transforms : sequence of callable
        The first one maps the *transformed* input to its baseline; zeros when empty.
    visualization_transform : callable, optional
        Maps the raw example (with its batch dimension of 1) to what is drawn: an image
        tensor, or the list of token strings for text.
    categories : sequence of str, optional
        Column names of a ``general`` feature.
    """

    name: str
    kind: str = "image"
    input_transforms: tuple[Callable[..., Any], ...] = ()
    baseline_transforms: tuple[Callable[..., Any], ...] = ()
    visualization_transform: Callable[..., Any] | None = None
    categories: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"A feature's name must be a non-empty str. Got {self.name!r}.")
        if self.kind not in FEATURE_KINDS:
            raise ValueError(
                f"The kind of feature {self.name!r} must be one of {FEATURE_KINDS}. "
                f"Got {self.kind!r}."
            )
        object.__setattr__(self, "input_transforms", _transforms(self.input_transforms))
        object.__setattr__(self, "baseline_transforms", _transforms(self.baseline_transforms))
        if self.visualization_transform is not None and not callable(self.visualization_transform):
            raise TypeError(
                f"The visualization_transform of feature {self.name!r} must be callable."
            )
        if self.categories is not None:
            object.__setattr__(self, "categories", tuple(str(c) for c in self.categories))


def _transforms(value: Any) -> tuple[Callable[..., Any], ...]:
    """Captum's convention: ``None``, one callable, or a list of callables."""
    if value is None:
        return ()
    items = (value,) if callable(value) else tuple(value)
    for item in items:
        if not callable(item):
            raise TypeError(f"A transform must be callable. Got {item!r}.")
    return items


def as_feature(feature: Any) -> Feature:
    """A :class:`Feature` from itself or any Captum-Insights-style feature object.

    Such objects have a ``name``, a ``visualization_type()`` returning the kind, and
    optionally ``input_transforms``, ``baseline_transforms``,
    ``visualization_transform`` and ``categories`` attributes.
    """
    if isinstance(feature, Feature):
        return feature
    kind_of = getattr(feature, "visualization_type", None)
    if not callable(kind_of) or not hasattr(feature, "name"):
        raise TypeError(
            "Each feature must be a whybox.app.Feature or an Insights feature "
            f"(ImageFeature, TextFeature, GeneralFeature). Got {feature!r}."
        )
    return Feature(
        name=str(feature.name),
        kind=str(kind_of()),
        input_transforms=getattr(feature, "input_transforms", None),
        baseline_transforms=getattr(feature, "baseline_transforms", None),
        visualization_transform=getattr(feature, "visualization_transform", None),
        categories=getattr(feature, "categories", None),
    )


# -- examples and predictions -------------------------------------------------------------
@dataclass
class Example:
    """One example: raw inputs (each ``(1, ...)``), its label and extra forward args."""

    index: int
    inputs: tuple[Tensor, ...]
    label: int | None
    forward_args: Any = None


@dataclass(frozen=True)
class Prediction:
    """A model's top-k classes for one example (scores after ``score_func``)."""

    top: tuple[tuple[int, float | None], ...]
    label: int | None

    @property
    def predicted(self) -> int | None:
        """The top-1 class index, ``None`` for an empty output."""
        return self.top[0][0] if self.top else None

    @property
    def correct(self) -> bool | None:
        """Whether the top-1 class is the label (``None`` without a label)."""
        if self.label is None or not self.top:
            return None
        return self.predicted == self.label


@dataclass
class Page:
    """One page of (filtered) examples."""

    indices: list[int]
    offset: int
    limit: int
    has_more: bool
    total: int | None  # known once the scan reached the end of the dataset
    scanned: int  # examples whose predictions the filter has looked at so far
    scan_limited: bool  # this request hit its scan budget before filling the page


@dataclass
class _FilterState:
    matched: list[int] = field(default_factory=list)
    next_index: int = 0
    complete: bool = False


def _model_device(model: Any) -> torch.device | None:
    if isinstance(model, nn.Module):
        for tensor in model.parameters():
            return tensor.device
        for tensor in model.buffers():
            return tensor.device
    return None


def to_device(value: Any, device: torch.device | None) -> Any:
    """Tensors (also inside tuples) moved to ``device``; anything else as it is."""
    if device is None:
        return value
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(to_device(v, device) for v in value)
    return value


def _slice_args(args: Any, i: int, n: int) -> Any:
    """Example ``i``'s share of a batch's extra forward arguments (Captum's rule: tensors
    with one row per example are sliced, everything else is shared)."""
    if args is None:
        return None
    if isinstance(args, Tensor):
        return args[i : i + 1] if args.dim() and args.shape[0] == n else args
    if isinstance(args, tuple):
        return tuple(_slice_args(a, i, n) for a in args)
    return args


class Workspace:
    """Models, class names, features and a lazily read dataset, as the app shows them.

    Parameters
    ----------
    models : nn.Module or sequence of nn.Module
        One or more models taking the features' transformed inputs in order.
    classes : sequence of str
        Class names, index-aligned with the models' outputs.
    features : Feature or sequence of Feature (or Insights feature objects)
        One per model input.
    dataset : iterable
        Batches: objects with ``inputs``, ``labels`` (and optional ``additional_args``)
        attributes, or ``(inputs, labels)`` pairs; inputs a tensor or a tuple with one
        tensor per feature, each ``(N, ...)``.
    score_func : callable, optional
        Applied to the model output to get class scores (e.g. softmax).
    use_label_for_attr : bool
        Pass the explained class as the methods' ``target`` (``False`` for models with
        one output whose value decides the class).
    model_names : sequence of str, optional
        Names shown in the app; defaults to the models' class names.
    title : str
        Shown in the page header and workspace list.
    top_k : int
        Predictions listed per example.
    chunk : int
        Examples per prediction forward.
    deletion_check : bool
        Give each input-shaped result its deletion check against random orders
        (:mod:`whybox.app.faithfulness`: 55 extra forward rows per result); ``False`` for
        models too slow for it.
    """

    def __init__(
        self,
        *,
        models: Any,
        classes: Sequence[str],
        features: Any,
        dataset: Iterable[Any],
        score_func: Callable[[Tensor], Tensor] | None = None,
        use_label_for_attr: bool = True,
        model_names: Sequence[str] | None = None,
        title: str = "whybox Insights",
        top_k: int = 4,
        chunk: int = 64,
        deletion_check: bool = True,
    ) -> None:
        models = list(models) if isinstance(models, (list, tuple)) else [models]
        if not models:
            raise ValueError("The 'models' parameter must hold at least one model.")
        for model in models:
            if not callable(model):
                raise TypeError(f"Each model must be callable (an nn.Module). Got {model!r}.")
        if isinstance(classes, str) or not isinstance(classes, Sequence) or not classes:
            raise TypeError("The 'classes' parameter must be a non-empty list of class names.")
        features = list(features) if isinstance(features, (list, tuple)) else [features]
        if not features:
            raise ValueError("The 'features' parameter must hold at least one feature.")
        if isinstance(dataset, Tensor) or not isinstance(dataset, Iterable):
            raise TypeError(
                "The 'dataset' parameter must be an iterable of Batch objects. "
                f"Got {type(dataset).__name__}."
            )
        if score_func is not None and not callable(score_func):
            raise TypeError("The 'score_func' parameter must be callable or None.")
        if not isinstance(use_label_for_attr, bool):
            raise TypeError("The 'use_label_for_attr' parameter must be a bool.")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"The 'top_k' parameter must be a positive int. Got {top_k!r}.")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"The 'chunk' parameter must be a positive int. Got {chunk!r}.")
        if not isinstance(deletion_check, bool):
            raise TypeError("The 'deletion_check' parameter must be a bool.")
        names = list(model_names) if model_names is not None else _default_names(models)
        if len(names) != len(models):
            raise ValueError("The 'model_names' parameter must give one name per model.")

        self.models: list[Any] = models
        self.model_names: list[str] = [str(n) for n in names]
        self.classes: list[str] = [str(c) for c in classes]
        self.features: list[Feature] = [as_feature(f) for f in features]
        self.score_func = score_func
        self.use_label_for_attr = use_label_for_attr
        self.title = str(title)
        self.top_k = top_k
        self.chunk = chunk
        self.deletion_check = deletion_check

        self._dataset = dataset
        self._source: Iterator[Any] | None = None
        self._examples: list[Example] = []
        self._exhausted = False
        self._batches = 0
        self._lock = threading.RLock()
        self._predictions: list[dict[int, Prediction]] = [{} for _ in models]
        self._filters: OrderedDict[tuple[Any, ...], _FilterState] = OrderedDict()
        self._prepared: OrderedDict[int, tuple[tuple[Tensor, ...], tuple[Tensor, ...]]] = (
            OrderedDict()
        )
        self._images: OrderedDict[tuple[int, int], bytes] = OrderedDict()

    # -- names -------------------------------------------------------------------------
    def class_name(self, index: int | None) -> str | None:
        """The class name for an index (``"class i"`` beyond the given names)."""
        if index is None:
            return None
        return self.classes[index] if 0 <= index < len(self.classes) else f"class {index}"

    def class_index(self, value: Any) -> int | None:
        """A class given by index or by name -> its index (``None`` if unknown)."""
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value if value >= 0 else None
        if isinstance(value, str):
            try:
                return self.classes.index(value)
            except ValueError:
                return int(value) if value.isdigit() else None
        return None

    # -- reading the dataset ---------------------------------------------------------------
    @property
    def loaded(self) -> int:
        """Examples read so far."""
        return len(self._examples)

    @property
    def exhausted(self) -> bool:
        """Whether the whole dataset has been read."""
        return self._exhausted

    def _read_more(self) -> bool:
        """Read one batch; ``False`` at the end of the dataset."""
        if self._exhausted:
            return False
        if self._source is None:
            try:
                self._source = iter(self._dataset)
            except Exception as error:  # the user's iterable
                raise DatasetError(f"The dataset cannot be iterated: {error}") from error
        try:
            batch = next(self._source)
        except StopIteration:
            self._exhausted = True
            return False
        except Exception as error:
            raise DatasetError(
                f"Reading batch {self._batches} of the dataset failed: "
                f"{type(error).__name__}: {error}"
            ) from error
        self._add_batch(batch)
        self._batches += 1
        return True

    def _add_batch(self, batch: Any) -> None:
        where = f"Batch {self._batches} of the dataset"
        if hasattr(batch, "inputs"):
            inputs, labels = batch.inputs, getattr(batch, "labels", None)
            extra = getattr(batch, "additional_args", None)
        elif isinstance(batch, (tuple, list)) and len(batch) == 2:
            (inputs, labels), extra = batch, None
        else:
            raise DatasetError(f"{where} must be a Batch(inputs, labels). Got {type(batch)}.")
        inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
        if len(inputs) != len(self.features) or not all(isinstance(t, Tensor) for t in inputs):
            raise DatasetError(
                f"{where} must hold one tensor per feature ({len(self.features)}). "
                f"Got {len(inputs)} inputs."
            )
        if any(t.dim() == 0 for t in inputs):
            raise DatasetError(f"{where} has a 0-d input; each input must be (N, ...).")
        n = inputs[0].shape[0]
        if any(t.shape[0] != n for t in inputs):
            raise DatasetError(f"{where}: inputs disagree on the number of examples.")
        label_list: list[int | None]
        if labels is None:
            label_list = [None] * n
        else:
            values = labels.reshape(-1).tolist() if isinstance(labels, Tensor) else list(labels)
            if len(values) != n:
                raise DatasetError(
                    f"{where} has {len(values)} labels for {n} examples; give one per example."
                )
            label_list = [int(v) for v in values]
        for i in range(n):
            self._examples.append(
                Example(
                    index=len(self._examples),
                    inputs=tuple(t[i : i + 1] for t in inputs),
                    label=label_list[i],
                    forward_args=_slice_args(extra, i, n),
                )
            )

    def ensure(self, count: int) -> int:
        """Read until ``count`` examples are known or the dataset ends; returns the count."""
        with self._lock:
            while len(self._examples) < count and self._read_more():
                pass
            return len(self._examples)

    def example(self, index: int, *, max_read: int = 100_000) -> Example:
        """The example at ``index``; raises ``KeyError`` when there is none.

        Reads ahead at most ``max_read`` examples past what is loaded, so an absurd id
        cannot make a request walk a huge dataset.
        """
        with self._lock:
            if index >= len(self._examples) and index < len(self._examples) + max_read:
                self.ensure(index + 1)
            if 0 <= index < len(self._examples):
                return self._examples[index]
        raise KeyError(index)

    # -- model inputs -------------------------------------------------------------------------
    def model_inputs(self, index: int) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """``(inputs, baselines)`` of an example as the models see them, each ``(1, ...)``.

        Captum Insights' rule: each feature's ``input_transforms`` run on the example
        without its batch dimension; the first ``baseline_transforms`` entry maps that
        transformed input to the baseline (zeros when there is none).
        """
        with self._lock:
            cached = self._prepared.get(index)
            if cached is not None:
                self._prepared.move_to_end(index)
                return cached
            example = self.example(index)
        inputs, baselines = [], []
        for feature, raw in zip(self.features, example.inputs):
            x = _apply(feature.input_transforms, raw, f"an input transform of {feature.name!r}")
            if feature.baseline_transforms:
                b = _apply(feature.baseline_transforms[:1], x, f"the baseline of {feature.name!r}")
                if not isinstance(b, Tensor) or b.shape != x.shape:
                    raise DatasetError(
                        f"The baseline transform of feature {feature.name!r} must return a "
                        f"tensor shaped like its input {tuple(x.shape[1:])}."
                    )
            else:
                b = torch.zeros_like(x)
            inputs.append(x)
            baselines.append(b)
        prepared = (tuple(inputs), tuple(baselines))
        with self._lock:
            self._prepared[index] = prepared
            while len(self._prepared) > 256:  # bounded: a few pages' worth
                self._prepared.popitem(last=False)
        return prepared

    def device(self, model_index: int) -> torch.device | None:
        """Where model ``model_index`` lives (inputs are moved there)."""
        return _model_device(self.models[model_index])

    # -- predictions --------------------------------------------------------------------------
    def predictions(self, model_index: int, indices: Sequence[int]) -> list[Prediction]:
        """Model ``model_index``'s predictions on the given (loaded) examples, cached."""
        with self._lock:
            cache = self._predictions[model_index]
            missing = [i for i in indices if i not in cache]
            for start in range(0, len(missing), self.chunk):
                self._predict(model_index, missing[start : start + self.chunk])
            return [cache[i] for i in indices]

    def _predict(self, model_index: int, indices: Sequence[int]) -> None:
        model = self.models[model_index]
        device = _model_device(model)
        cache = self._predictions[model_index]
        # examples with equal shapes and no extra arguments go through in one forward
        groups: dict[Any, list[int]] = {}
        for i in indices:
            x, _ = self.model_inputs(i)
            example = self._examples[i]
            key = (
                ("single", i)
                if example.forward_args is not None
                else tuple((tuple(t.shape), t.dtype) for t in x)
            )
            groups.setdefault(key, []).append(i)
        for group in groups.values():
            xs = [self.model_inputs(i)[0] for i in group]
            batch = tuple(torch.cat(parts, 0) for parts in zip(*xs))
            extra = self._examples[group[0]].forward_args
            args = () if extra is None else (extra if isinstance(extra, tuple) else (extra,))
            try:
                with torch.no_grad():
                    out = model(*to_device(batch, device), *to_device(args, device))
                    if self.score_func is not None:
                        out = self.score_func(out)
            except Exception as error:
                raise DatasetError(
                    f"{self.model_names[model_index]} failed on examples {group[:5]}: "
                    f"{type(error).__name__}: {error}"
                ) from error
            if not isinstance(out, Tensor) or out.dim() == 0 or out.shape[0] != len(group):
                raise DatasetError(
                    f"{self.model_names[model_index]} (after score_func) must return a "
                    f"tensor with one row per example. Got {out!r:.80}."
                )
            scores = out.detach().float().reshape(len(group), -1).cpu()
            for row, i in zip(scores, group):
                cache[i] = Prediction(top=self._top(row), label=self._examples[i].label)

    def _top(self, row: Tensor) -> tuple[tuple[int, float], ...]:
        if row.numel() == 0:
            return ()
        if row.numel() == 1:
            # one output (a probability): the class is its rounding, as in Captum Insights
            score = float(row[0])
            if not math.isfinite(score):
                return ()
            return ((int(round(score)), score),)
        # NaN would sort anywhere and cannot go into JSON: such a class scores -inf here
        # and its score is reported as null
        row = torch.where(torch.isnan(row), torch.tensor(float("-inf")), row)
        k = min(self.top_k, row.numel())
        values, classes = row.topk(k)
        return tuple(
            (int(c), float(v) if math.isfinite(v) else None)
            for c, v in zip(classes.tolist(), values.tolist())
        )

    # -- pages ---------------------------------------------------------------------------------
    def page(
        self,
        *,
        offset: int,
        limit: int,
        model: int = 0,
        predicted: Sequence[int] = (),
        labels: Sequence[int] = (),
        correctness: str = "all",
        scan_budget: int = 5_000,
    ) -> Page:
        """Examples ``offset .. offset + limit`` among those matching the filter.

        Only the examples a filter needs to look at get predictions: scanning stops once
        the page (and one more match, to know whether there is a next page) is found, or
        after ``scan_budget`` examples in this request; the scan resumes where it stopped
        on the next request for the same filter.
        """
        if correctness not in CORRECTNESS:
            raise ValueError(f"correctness must be one of {CORRECTNESS}")
        wanted = offset + limit + 1
        with self._lock:
            if not predicted and not labels and correctness == "all":
                known = self.ensure(wanted)
                indices = list(range(offset, min(offset + limit, known)))
                return Page(
                    indices=indices,
                    offset=offset,
                    limit=limit,
                    has_more=known > offset + limit,
                    total=known if self._exhausted else None,
                    scanned=known,
                    scan_limited=False,
                )
            key = (model, frozenset(predicted), frozenset(labels), correctness)
            state = self._filters.get(key)
            if state is None:
                state = self._filters[key] = _FilterState()
                while len(self._filters) > 32:
                    self._filters.popitem(last=False)
            self._filters.move_to_end(key)
            needs_predictions = bool(predicted) or correctness != "all"
            scanned = 0
            limited = False
            while not state.complete and len(state.matched) < wanted:
                if scanned >= scan_budget:
                    limited = True
                    break
                start = state.next_index
                stop = start + min(self.chunk, scan_budget - scanned)
                known = self.ensure(stop)
                stop = min(stop, known)
                if stop <= start:
                    state.complete = True
                    break
                span = list(range(start, stop))
                preds = self.predictions(model, span) if needs_predictions else [None] * len(span)
                for i, pred in zip(span, preds):
                    if self._matches(i, pred, predicted, labels, correctness):
                        state.matched.append(i)
                state.next_index = stop
                scanned += stop - start
            return Page(
                indices=state.matched[offset : offset + limit],
                offset=offset,
                limit=limit,
                has_more=len(state.matched) > offset + limit or not state.complete,
                total=len(state.matched) if state.complete else None,
                scanned=state.next_index,
                scan_limited=limited,
            )

    def _matches(
        self,
        index: int,
        pred: Prediction | None,
        predicted: Sequence[int],
        labels: Sequence[int],
        correctness: str,
    ) -> bool:
        label = self._examples[index].label
        if labels and label not in labels:
            return False
        if pred is None:
            return True
        if predicted and pred.predicted not in predicted:
            return False
        if correctness == "correct":
            return pred.correct is True
        if correctness == "incorrect":
            return pred.correct is False
        return True

    # -- drawing raw inputs ---------------------------------------------------------------------
    def display_value(self, index: int, feature_index: int) -> Any:
        """What feature ``feature_index`` of an example draws: its
        ``visualization_transform`` of the raw input (with its batch dimension), or the
        raw input itself."""
        example = self.example(index)
        feature = self.features[feature_index]
        raw = example.inputs[feature_index]
        if feature.visualization_transform is None:
            return raw
        try:
            return feature.visualization_transform(raw)
        except Exception as error:
            raise DatasetError(
                f"The visualization_transform of feature {feature.name!r} failed: "
                f"{type(error).__name__}: {error}"
            ) from error

    def tokens(self, index: int, feature_index: int) -> list[str]:
        """The tokens of a text feature of an example."""
        value = self.display_value(index, feature_index)
        if isinstance(value, str):
            return value.split()
        if isinstance(value, Tensor):
            return [str(v) for v in value.reshape(-1).tolist()]
        if isinstance(value, Sequence) and value and isinstance(value[0], (list, tuple)):
            value = value[0]  # a batch of one token list
        return [str(v) for v in value]

    def image_png(self, index: int, feature_index: int) -> bytes:
        """The picture of an image feature of an example, as PNG bytes (cached)."""
        from .render import encode_png, to_pixels

        key = (index, feature_index)
        with self._lock:
            cached = self._images.get(key)
        if cached is not None:
            return cached
        png = encode_png(to_pixels(self.display_value(index, feature_index)))
        with self._lock:
            self._images[key] = png
            while len(self._images) > 512:
                self._images.popitem(last=False)
        return png


def _apply(transforms: Sequence[Callable[..., Any]], x: Tensor, what: str) -> Tensor:
    """Run ``transforms`` on one example: batch dimension removed, then put back."""
    if not transforms:
        return x
    value: Any = x.squeeze(0)
    try:
        for transform in transforms:
            value = transform(value)
    except Exception as error:
        raise DatasetError(f"{what} failed: {type(error).__name__}: {error}") from error
    if not isinstance(value, Tensor):
        raise DatasetError(f"{what} must return a tensor. Got {type(value).__name__}.")
    return value.unsqueeze(0)


def _default_names(models: Sequence[Any]) -> list[str]:
    names = [type(m).__name__ if isinstance(m, nn.Module) else "model" for m in models]
    if len(set(names)) < len(names):  # two models of one class: number them
        names = [f"{n} #{i}" for i, n in enumerate(names)]
    return names
