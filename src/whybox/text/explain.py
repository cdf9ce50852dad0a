"""One call to explain a Hugging Face sequence classifier on texts.

``explain_text(model, tokenizer, texts)`` tokenizes (with offsets), cuts texts longer than
the model's window into overlapping windows, batches the rows of many texts together,
predicts, explains every row with any registered method and merges the rows back into one
:class:`TextExplanation` per text: per-token and per-word scores, the prediction, the
convergence delta and an HTML view.

Where the attributions are taken: gradient methods (the default, Integrated Gradients)
run on the model's input embeddings (``inputs_embeds``; the same numbers as Layer IG on
``model.get_input_embeddings()``), so token, zero-embedding, uncertain and averaged
baselines are all embedding tensors; ``layer=`` runs Layer scope on another module
(``"bert.embeddings"`` as in seed 002) with token baselines; perturbation and attention
methods run on the token ids.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from whybox.core.validation import check_choice, check_int, fail

from .baselines import (
    filler_id,
    mean_of,
    uncertain_embedding_baseline,
    uncertain_token_baseline,
    zero_embedding_baseline,
)
from .outputs import OutputSelector, SelectedOutput, select_output
from .windows import MERGES, TokenWindows, merge_windows, plan_windows
from .words import SCHEMES, Word, group_words, word_scores

__all__ = ["explain_text", "TextExplanation", "TextExplanations", "TOKEN_METHODS"]

#: methods explained on token ids (perturbations replace tokens; attention reads the model)
TOKEN_METHODS = frozenset(
    {
        "feature_ablation",
        "feature_permutation",
        "occlusion",
        "shapley_values",
        "shapley_value_sampling",
        "kernel_shap",
        "lime",
        "attention_rollout",
        "attention_flow",
        "gradient_weighted_rollout",
    }
)
_EMBEDDING_KINDS = ("zero", "uncertain")
#: a baseline: a filler name / token / id, "zero", "uncertain", a callable, or several
BaselineSpec = str | int | Callable[[Tensor, Tensor], Tensor] | Sequence[Any]
Span = tuple[int, int]


@dataclass
class TextExplanation:
    """The explanation of one text.

    Attributes
    ----------
    text : str
    tokens : list of str
        All ``T`` tokens of the text, special tokens included (``[CLS] ... [SEP]``).
    token_ids : Tensor
        ``(T,)`` long.
    offsets : list of (int, int) or None
        Character span of each token in ``text`` (``None`` for special tokens, or when
        the tokenizer gives no offsets).
    special : Tensor
        ``(T,)`` bool, the special tokens the baselines keep.
    attributions : Tensor
        ``(T, ...)`` raw attributions per token (``(T, D)`` on embeddings).
    token_scores : Tensor
        ``(T,)``: attributions summed over their trailing dimensions.
    words : list of Word
        Words of the text (and special tokens), with character offsets.
    word_scores : Tensor
        ``(len(words),)``: sums of their tokens' scores.
    target : int
        The class explained.
    prediction : int
        The predicted class (argmax of ``logits``).
    logits : Tensor
        ``(C,)``; for a text cut into windows, the mean of the windows' logits.
    probabilities : Tensor
        ``(C,)`` softmax of ``logits`` (sigmoid for one output).
    label : str or None
        The model's name of ``prediction`` (``config.id2label``).
    delta : Tensor or None
        ``(n_windows,)`` convergence delta of each window (one window for a text that fits).
    windows : list of (int, int)
        Token span of each window over the text's content tokens.
    method : str
    parameters : dict
    """

    text: str
    tokens: list[str]
    token_ids: Tensor
    offsets: list[Span | None]
    special: Tensor
    attributions: Tensor
    token_scores: Tensor
    words: list[Word]
    word_scores: Tensor
    target: int
    prediction: int
    logits: Tensor
    probabilities: Tensor
    label: str | None = None
    delta: Tensor | None = None
    windows: list[Span] = field(default_factory=list)
    method: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        delta = ""
        if self.delta is not None and self.delta.numel():
            delta = f", max|delta|={float(self.delta.abs().max()):.3g}"
        return (
            f"TextExplanation(method={self.method!r}, tokens={len(self.tokens)}, "
            f"words={len(self.words)}, prediction={self.prediction}, target={self.target}, "
            f"windows={len(self.windows)}{delta})"
        )

    def caption(self) -> str:
        """One line: prediction (probability), target and convergence delta."""
        name = f" {self.label}" if self.label else ""
        line = (
            f"prediction {self.prediction}{name} "
            f"(p={float(self.probabilities[self.prediction]):.2f}); target {self.target}"
        )
        if self.delta is not None and self.delta.numel():
            line += f"; |delta| {float(self.delta.abs().max()):.2g}"
        if len(self.windows) > 1:
            line += f"; {len(self.windows)} windows"
        return line

    def to_html(
        self, *, level: str = "words", full_page: bool = True, title: str | None = None
    ) -> str:
        """Self-contained HTML of the text highlighted by attribution (no scripts, no network).

        Parameters
        ----------
        level : {"words", "tokens"}
        full_page : bool
            A complete page, or a fragment for notebooks.
        title : str, optional
        """
        from whybox.viz.text import text_html

        check_choice("TextExplanation.to_html", "level", level, ("words", "tokens"))
        if level == "words":
            values, tokens = self.word_scores, [w.text for w in self.words]
        else:
            values, tokens = self.token_scores, self.tokens
        return text_html(
            values,
            tokens=tokens,
            title=title if title is not None else f"{self.method or 'attribution'}",
            caption=self.caption(),
            full_page=full_page,
        )

    def view(self, *, level: str = "words") -> Any:
        """The HTML as an :class:`~whybox.viz.html.HTMLView` (notebook display, ``.save``)."""
        from whybox.viz.html import HTMLView

        return HTMLView(self.to_html(level=level, full_page=False), title=self.method or "whybox")

    def _repr_html_(self) -> str:
        return self.to_html(full_page=False)

    def plot(self, *, level: str = "words", k: int = 10, **options: Any) -> Any:
        """Bar chart of the ``k`` words (or tokens) of largest magnitude; a matplotlib Figure."""
        from whybox.viz.text import plot_top_tokens

        check_choice("TextExplanation.plot", "level", level, ("words", "tokens"))
        if level == "words":
            values, tokens = self.word_scores, [w.text for w in self.words]
        else:
            values, tokens = self.token_scores, self.tokens
        options.setdefault("title", self.caption())
        return plot_top_tokens(values, tokens=tokens, k=k, **options)


class TextExplanations(list):
    """A list of :class:`TextExplanation` (one per text) that displays as one page."""

    def to_html(self, *, level: str = "words", full_page: bool = True) -> str:
        """All texts' views, one after another."""
        from whybox.viz.html import fragment, page

        body = "\n".join(
            item.to_html(level=level, full_page=False, title=f"text {i}")
            for i, item in enumerate(self)
        )
        return page(body, title="whybox text attributions") if full_page else fragment(body)

    def _repr_html_(self) -> str:
        return self.to_html(full_page=False)


# -- the call -------------------------------------------------------------------------------
def explain_text(
    model: Any,
    tokenizer: Any,
    texts: str | Sequence[str],
    target: Any = None,
    method: str = "integrated_gradients",
    *,
    baseline: BaselineSpec = "pad",
    layer: Any = None,
    output_selector: OutputSelector = None,
    max_length: int | None = None,
    overlap: int | None = None,
    merge: str = "center",
    batch_size: int = 8,
    scheme: str = "auto",
    show_progress: bool | None = None,
    **options: Any,
) -> TextExplanation | TextExplanations:
    """Explain a Hugging Face sequence classifier's prediction on one or many texts.

    Parameters
    ----------
    model : nn.Module
        A classifier called as ``model(input_ids, attention_mask=...)`` (and
        ``model(inputs_embeds=..., attention_mask=...)`` for gradient methods without
        ``layer``) returning logits ``(N, C)``, a ``ModelOutput`` with ``logits``, or any
        output ``output_selector`` picks them from.
    tokenizer : a Hugging Face tokenizer
        A fast tokenizer gives character offsets (words cut from the text).
    texts : str or sequence of str
    target : None, int, str or sequence of them
        The class to explain: ``None`` the predicted class, a label name of
        ``model.config.label2id``, or one per text.
    method : str
        A registered method (:func:`whybox.available_methods`).
    baseline : str, int, callable or sequence of them
        ``"pad"`` (default), ``"unk"``, ``"mask"``, a token string or id (the filler of the
        content tokens; special tokens and padding stay in place), ``"zero"`` (zero
        embeddings), ``"uncertain"`` (a baseline the model is equally unsure about: optimised
        embeddings for gradient methods, the most ambiguous filler token otherwise), a
        callable ``f(input_ids, keep) -> Tensor`` giving baseline ids ``(B, T)`` or
        embeddings ``(B, T, D)`` for a batch (``keep`` marks special tokens and padding),
        or a list of these: attributions are averaged over them.
    layer : nn.Module or str, optional
        Explain at this layer of ``model`` (e.g. ``"bert.embeddings"``) from token ids.
    output_selector : None, int, str or callable
        Picks the logits in the model's output (see :func:`whybox.text.outputs.select_output`);
        a ``ModelOutput``'s ``logits`` by default.
    max_length : int, optional
        Tokens per model input, special tokens included; default the smaller of
        ``tokenizer.model_max_length`` and ``model.config.max_position_embeddings``. Longer
        texts are explained by overlapping windows (:mod:`whybox.text.windows`).
    overlap : int, optional
        Tokens shared by neighbouring windows; default a quarter of a window.
    merge : {"center", "mean"}
        How window scores are merged (:func:`whybox.text.windows.merge_windows`).
    batch_size : int
        Model inputs (windows of one or several texts) explained together.
    scheme : {"auto", "wordpiece", "bpe", "sentencepiece", "whitespace", "none"}
        Sub-word convention for words (:func:`whybox.text.words.group_words`).
    show_progress : bool, optional
        A progress bar over the batches; default: when there is more than one batch.
    **options
        The method's options (``n_steps``, ``chunk_size``, ...), as for :func:`whybox.explain`.

    Returns
    -------
    TextExplanation or TextExplanations
        One result for a ``str``, a list of results (one per text, in order) otherwise. The
        result of a text does not depend on the other texts it is batched with. Tensors of
        the results are on the CPU.

    Examples
    --------
    >>> result = explain_text(model, tokenizer, "a wonderful, moving film", n_steps=32)
    >>> result.words[1].text, result.word_scores[1], result.delta
    """
    owner = "explain_text"
    single = isinstance(texts, str)
    items = [texts] if single else texts
    if not isinstance(items, Sequence) or not all(isinstance(t, str) for t in items):
        fail(owner, "texts", "a str or a sequence of str", texts, type_error=True)
    check_int(owner, "batch_size", batch_size, minimum=1)
    check_choice(owner, "merge", merge, MERGES)
    check_choice(owner, "scheme", scheme, SCHEMES)
    if not isinstance(method, str):
        fail(owner, "method", "the name of a registered method", method, type_error=True)
    if not isinstance(model, nn.Module):
        fail(owner, "model", "an nn.Module (a Hugging Face classifier)", model, type_error=True)
    if model.training:
        warnings.warn(
            "explain_text: the model is in training mode, so dropout makes attributions random; "
            "call model.eval() first.",
            stacklevel=2,
        )
    plan = _Plan.make(model, tokenizer, method, layer, baseline, output_selector, max_length, owner)
    encoded = [plan.encode(text, overlap) for text in items]
    rows = [row for i, enc in enumerate(encoded) for row in enc.rows(i)]
    of_text: list[list[int]] = [[] for _ in items]  # row positions of each text
    for r, row in enumerate(rows):
        of_text[row.text].append(r)
    # rows of similar length share a batch (less padding); results never depend on it
    batches = list(_batches(rows, batch_size, plan.pad_id))
    logits = plan.predict(rows, batches)
    # a text cut into windows is predicted by the mean of its windows' logits
    text_logits = [torch.stack([logits[r] for r in mine]).mean(0) for mine in of_text]
    targets = _targets(target, text_logits, model, len(items), owner)
    for row in rows:
        row.target = targets[row.text]

    show = len(batches) > 1 if show_progress is None else bool(show_progress)
    per_row: list[tuple[Tensor, Tensor | None]] = [None] * len(rows)  # type: ignore[list-item]
    parameters: dict[str, Any] = {}
    for batch in _progress(batches, show):
        attributions, deltas, parameters = plan.attribute([rows[r] for r in batch], options)
        # results live on the CPU: many texts never fill the accelerator's memory
        attributions = attributions.detach().cpu()
        deltas = None if deltas is None else deltas.detach().cpu()
        for b, r in enumerate(batch):
            delta = None if deltas is None else deltas[b]
            per_row[r] = (attributions[b, : len(rows[r].ids)].clone(), delta)

    results = TextExplanations()
    for i, enc in enumerate(encoded):
        mine = [per_row[r] for r in of_text[i]]
        results.append(
            enc.result(
                mine,
                text_logits[i],
                targets[i],
                plan,
                merge=merge,
                scheme=scheme,
                parameters=parameters,
            )
        )
    return results[0] if single else results


# -- internals ------------------------------------------------------------------------------
@dataclass
class _Row:
    """One model input: a window of one text with the sequence's special tokens."""

    text: int
    ids: list[int]
    keep: list[bool]
    target: int = 0


@dataclass
class _Encoded:
    """One tokenized text: special-token frame, content, offsets and windows."""

    text: str
    ids: list[int]
    offsets: list[Span | None]
    n_prefix: int
    n_suffix: int
    windows: TokenWindows

    @property
    def content(self) -> list[int]:
        return self.ids[self.n_prefix : len(self.ids) - self.n_suffix]

    def rows(self, index: int) -> Iterator[_Row]:
        prefix, suffix = self.ids[: self.n_prefix], self.ids[len(self.ids) - self.n_suffix :]
        content = self.content
        for start, stop in self.windows.spans:
            ids = prefix + content[start:stop] + suffix
            keep = [True] * len(prefix) + [False] * (stop - start) + [True] * len(suffix)
            yield _Row(index, ids, keep)

    def result(
        self,
        rows: list[tuple[Tensor, Tensor | None]],
        logits: Tensor,
        target: int,
        plan: _Plan,
        *,
        merge: str,
        scheme: str,
        parameters: dict[str, Any],
    ) -> TextExplanation:
        p, s = self.n_prefix, self.n_suffix
        values = [a for a, _ in rows]
        if len(values) == 1:
            attributions = values[0]
        else:
            contents = [v[p : v.shape[0] - s] for v in values]
            # the frame (special tokens) is in every window: its mean over them
            head = torch.stack([v[:p] for v in values]).mean(0)
            tail = torch.stack([v[v.shape[0] - s :] for v in values]).mean(0)
            attributions = torch.cat([head, merge_windows(contents, self.windows, how=merge), tail])
        attributions = attributions.detach()
        token_scores = attributions.reshape(attributions.shape[0], -1).sum(-1)
        special = [True] * p + [False] * (len(self.ids) - p - s) + [True] * s
        tokens = plan.tokenizer.convert_ids_to_tokens(self.ids)
        words = group_words(
            tokens,
            text=self.text if plan.has_offsets else None,
            offsets=self.offsets if plan.has_offsets else None,
            special=special,
            scheme=scheme,
            tokenizer=plan.tokenizer,
        )
        deltas = [d for _, d in rows if d is not None]
        logits = logits.detach()
        probabilities = torch.sigmoid(logits) if logits.numel() == 1 else torch.softmax(logits, -1)
        prediction = int(logits.argmax()) if logits.numel() > 1 else int(logits.item() > 0)
        id2label = getattr(getattr(plan.model, "config", None), "id2label", None) or {}
        return TextExplanation(
            text=self.text,
            tokens=list(tokens),
            token_ids=torch.tensor(self.ids),
            offsets=list(self.offsets),
            special=torch.tensor(special),
            attributions=attributions,
            token_scores=token_scores,
            words=words,
            word_scores=word_scores(words, token_scores),
            target=target,
            prediction=prediction,
            logits=logits,
            probabilities=probabilities,
            label=id2label.get(prediction),
            delta=torch.stack(deltas).detach() if deltas else None,
            windows=self.windows.spans,
            method=plan.method,
            parameters=dict(parameters, baseline=plan.baseline_name, windows=len(self.windows)),
        )


@dataclass
class _Plan:
    """Everything decided once per call: where attributions are taken, how to call the model."""

    model: nn.Module
    runner: nn.Module
    tokenizer: Any
    method: str
    path: str  # "embeddings", "layer" or "ids"
    layer: nn.Module | None
    baselines: list[Any]
    baseline_name: str
    output_selector: OutputSelector
    max_length: int | None
    pad_id: int | None
    has_offsets: bool
    pass_mask: bool
    device: torch.device

    @classmethod
    def make(
        cls,
        model: nn.Module,
        tokenizer: Any,
        method: str,
        layer: Any,
        baseline: Any,
        output_selector: OutputSelector,
        max_length: int | None,
        owner: str,
    ) -> _Plan:
        from whybox.core.registry import available_methods

        if method not in available_methods():
            fail(owner, "method", f"one of {sorted(available_methods())}", method)
        if isinstance(layer, str):
            try:
                layer = model.get_submodule(layer)
            except AttributeError:
                fail(
                    owner,
                    "layer",
                    "the name of a submodule of the model (e.g. 'bert.embeddings')",
                    layer,
                )
        elif layer is not None and not isinstance(layer, nn.Module):
            fail(owner, "layer", "an nn.Module of the model or its name", layer, type_error=True)
        takes = _forward_parameters(model)
        if method in TOKEN_METHODS:
            path = "ids"
        elif layer is not None:
            path = "layer"
        else:
            path = "embeddings"
            if not hasattr(model, "get_input_embeddings") or not takes("inputs_embeds"):
                fail(
                    owner,
                    "model",
                    "a model with get_input_embeddings() whose forward takes inputs_embeds "
                    "(or pass layer=, e.g. its embedding module)",
                    type(model).__name__,
                    raw=True,
                )
        specs = list(baseline) if isinstance(baseline, (list, tuple)) else [baseline]
        if not specs:
            fail(owner, "baseline", "a baseline or a non-empty list of them", baseline)
        for spec in specs:
            _check_baseline(spec, path, tokenizer, owner)
        if max_length is None:
            max_length = _model_window(model, tokenizer)
        elif isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            fail(owner, "max_length", "a positive int or None", max_length)
        # the selector, not a user wrapper, reduces tuple / dict outputs to logits; attention
        # methods capture the model's own attention and take output_selector themselves
        attention = method in ("attention_rollout", "attention_flow", "gradient_weighted_rollout")
        runner = model if attention else SelectedOutput(model, output_selector)
        parameter = next(iter(model.parameters()), None)
        return cls(
            model=model,
            runner=runner,
            tokenizer=tokenizer,
            method=method,
            path=path,
            layer=layer,
            baselines=specs,
            baseline_name=" + ".join(_describe(s) for s in specs),
            output_selector=output_selector,
            max_length=max_length,
            pad_id=getattr(tokenizer, "pad_token_id", None),
            has_offsets=bool(getattr(tokenizer, "is_fast", False)),
            pass_mask=takes("attention_mask"),
            device=parameter.device if parameter is not None else torch.device("cpu"),
        )

    # -- tokens ---------------------------------------------------------------------------
    def encode(self, text: str, overlap: int | None) -> _Encoded:
        encoding = self.tokenizer(
            text,
            add_special_tokens=True,
            truncation=False,
            return_special_tokens_mask=True,
            return_offsets_mapping=self.has_offsets,
            verbose=False,  # no "longer than the maximum" warning: windows handle it
        )
        ids = list(encoding["input_ids"])
        special = list(encoding["special_tokens_mask"])
        n_prefix = next((i for i, s in enumerate(special) if not s), len(ids))
        n_suffix = next((i for i, s in enumerate(reversed(special[n_prefix:])) if not s), 0)
        if n_prefix == len(ids):
            n_suffix = 0
        offsets: list[Span | None] = [None] * len(ids)
        if self.has_offsets:
            for i, (start, end) in enumerate(encoding["offset_mapping"]):
                if n_prefix <= i < len(ids) - n_suffix:
                    offsets[i] = (int(start), int(end))
        length = len(ids) - n_prefix - n_suffix
        if self.max_length is None:
            size = max(length, 1)
        else:
            size = self.max_length - n_prefix - n_suffix
            if size < 1:
                fail(
                    "explain_text",
                    "max_length",
                    f"more than the {n_prefix + n_suffix} special tokens",
                    self.max_length,
                )
        if overlap is None:
            overlap = size // 4
        elif isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < size:
            fail(
                "explain_text",
                "overlap",
                f"an int in [0, {size}) (the window's content tokens)",
                overlap,
            )
        windows = plan_windows(length, size=size, overlap=overlap)
        return _Encoded(text, ids, offsets, n_prefix, n_suffix, windows)

    # -- the model ------------------------------------------------------------------------
    def tensors(self, batch: list[_Row]) -> tuple[Tensor, Tensor, Tensor]:
        """``(B, T)`` ids, attention mask and keep mask of a batch, right-padded."""
        width = max(len(row.ids) for row in batch)
        pad = self.pad_id if self.pad_id is not None else 0
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        keep = torch.ones((len(batch), width), dtype=torch.bool)
        for b, row in enumerate(batch):
            n = len(row.ids)
            ids[b, :n] = torch.tensor(row.ids)
            mask[b, :n] = 1
            keep[b, :n] = torch.tensor(row.keep)
        return ids.to(self.device), mask.to(self.device), keep.to(self.device)

    def kwargs(self, mask: Tensor) -> dict[str, Tensor]:
        return {"attention_mask": mask} if self.pass_mask else {}

    def predict(self, rows: list[_Row], batches: list[list[int]]) -> list[Tensor]:
        """Logits ``(C,)`` of every row, in row order."""
        out: list[Tensor] = [None] * len(rows)  # type: ignore[list-item]
        with torch.no_grad():  # predictions need no graph
            for positions in batches:
                batch = [rows[r] for r in positions]
                ids, mask, _ = self.tensors(batch)
                logits = select_output(
                    self.model(ids, **self.kwargs(mask)), self.output_selector, owner="explain_text"
                )
                if logits.dim() == 1:
                    logits = logits.unsqueeze(-1)
                if logits.dim() != 2 or logits.shape[0] != len(batch):
                    fail(
                        "explain_text",
                        "model",
                        "a classifier returning logits of shape (batch, n_classes)",
                        f"a model returning shape {tuple(logits.shape)}",
                        raw=True,
                    )
                wide = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
                for r, value in zip(positions, wide.cpu()):
                    out[r] = value
        return out

    def attribute(
        self, batch: list[_Row], options: dict[str, Any]
    ) -> tuple[Tensor, Tensor | None, dict]:
        """Attributions ``(B, T, ...)`` and deltas ``(B,)`` of one batch, averaged over baselines."""
        from whybox.methods import build

        ids, mask, keep = self.tensors(batch)
        targets = [row.target for row in batch]
        results = []
        for spec in self.baselines:
            call = dict(options)
            if self.layer is not None:
                call["layer"] = self.layer
            if self.method == "gradient_weighted_rollout" and self.output_selector is not None:
                call["output_selector"] = lambda output: select_output(output, self.output_selector)
            built, call_options = build(self.method, self.runner, **call)
            accepted = type(built).option_names()[1]
            kwargs = self.kwargs(mask)
            if kwargs and "forward_args" in accepted:
                call_options["forward_args"] = kwargs
            if "target" in accepted:
                call_options["target"] = targets
            if self.path == "embeddings":
                embeddings = self.model.get_input_embeddings()(ids).detach()
                inputs: Any = {"inputs_embeds": embeddings}
                reference = self.embedding_baseline(spec, ids, mask, keep, embeddings)
            else:
                inputs = ids
                reference = self.token_baseline(spec, ids, mask, keep)
            if "baselines" in accepted:
                call_options["baselines"] = reference
            result = built.attribute(inputs, **call_options)
            attributions = result.attributions
            if isinstance(attributions, dict):
                attributions = attributions["inputs_embeds"]
            if isinstance(attributions, (tuple, list)):
                attributions = attributions[0]
            results.append((attributions, result.delta, result.parameters))
        attributions = mean_of([a for a, _, _ in results])
        deltas = [d for _, d, _ in results if d is not None]
        delta = torch.stack(deltas).mean(0) if len(deltas) == len(results) else None
        return attributions, delta, dict(results[0][2])

    def token_baseline(self, spec: Any, ids: Tensor, mask: Tensor, keep: Tensor) -> Tensor:
        if spec == "uncertain":
            return uncertain_token_baseline(
                self.model,
                self.tokenizer,
                ids,
                attention_mask=mask if self.pass_mask else None,
                keep=keep,
                output_selector=self.output_selector,
            )
        if callable(spec):
            value = spec(ids, keep)
            if (
                not isinstance(value, Tensor)
                or value.shape != ids.shape
                or value.is_floating_point()
            ):
                fail(
                    "explain_text",
                    "baseline",
                    f"a callable returning token ids of shape {tuple(ids.shape)}",
                    value,
                )
            return value.to(ids.device)
        filler = filler_id(self.tokenizer, spec, owner="explain_text")
        return torch.where(keep, ids, torch.full_like(ids, filler))

    def embedding_baseline(
        self, spec: Any, ids: Tensor, mask: Tensor, keep: Tensor, embeddings: Tensor
    ) -> Tensor:
        embed = self.model.get_input_embeddings()
        if spec == "zero":
            return zero_embedding_baseline(embeddings, keep)
        if spec == "uncertain":
            return uncertain_embedding_baseline(
                self.model,
                self.tokenizer,
                ids,
                attention_mask=mask if self.pass_mask else None,
                keep=keep,
                output_selector=self.output_selector,
            )
        if callable(spec):
            value = spec(ids, keep)
            if (
                isinstance(value, Tensor)
                and not value.is_floating_point()
                and value.shape == ids.shape
            ):
                with torch.no_grad():
                    return embed(value.to(ids.device))
            if not isinstance(value, Tensor) or value.shape != embeddings.shape:
                fail(
                    "explain_text",
                    "baseline",
                    f"a callable returning ids {tuple(ids.shape)} or embeddings {tuple(embeddings.shape)}",
                    value,
                )
            return value.to(embeddings)
        with torch.no_grad():
            return embed(self.token_baseline(spec, ids, mask, keep))


def _check_baseline(spec: Any, path: str, tokenizer: Any, owner: str) -> None:
    if callable(spec):
        return
    if spec == "zero" and path != "embeddings":
        fail(
            owner,
            "baseline",
            "a token baseline ('pad', 'unk', 'mask', a token or an id) here: zero embeddings "
            "need a gradient method without layer=",
            spec,
        )
    if isinstance(spec, str) and spec in _EMBEDDING_KINDS:
        return
    filler_id(tokenizer, spec, owner=owner)  # raises for a filler the tokenizer lacks


def _describe(spec: Any) -> str:
    return getattr(spec, "__name__", "callable") if callable(spec) else str(spec)


def _forward_parameters(model: nn.Module) -> Callable[[str], bool]:
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return lambda name: True
    names = signature.parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in names.values())
    return lambda name: name in names or var_kw


def _model_window(model: nn.Module, tokenizer: Any) -> int | None:
    """The longest input the model takes: tokenizer and config limits, the smaller."""
    limits = []
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and tok_limit < 1_000_000:  # huge sentinel: no limit set
        limits.append(tok_limit)
    config = getattr(model, "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    return min(limits) if limits else None


def _batches(rows: list[_Row], size: int, pad_id: int | None) -> Iterator[list[int]]:
    """Row positions in batches of ``size``, by length; without a pad token only rows of
    equal length share a batch."""
    batch: list[int] = []
    for r in sorted(range(len(rows)), key=lambda r: len(rows[r].ids)):
        width = len(rows[batch[0]].ids) if batch else None
        if batch and (len(batch) == size or (pad_id is None and len(rows[r].ids) != width)):
            yield batch
            batch = []
        batch.append(r)
    if batch:
        yield batch


def _targets(target: Any, logits: list[Tensor], model: nn.Module, n: int, owner: str) -> list[int]:
    n_classes = logits[0].numel() if logits else 0
    label2id = getattr(getattr(model, "config", None), "label2id", None) or {}

    def one(value: Any, i: int) -> int:
        if value is None:
            return int(logits[i].argmax()) if n_classes > 1 else 0
        if isinstance(value, Tensor) and value.numel() == 1:
            value = int(value.item())
        if isinstance(value, str):
            if value not in label2id:
                fail(
                    owner, "target", f"a class index or one of the labels {sorted(label2id)}", value
                )
            return int(label2id[value])
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 0 <= value < max(n_classes, 1)
        ):
            fail(owner, "target", f"None, a label or a class index in [0, {n_classes})", value)
        return int(value)

    if isinstance(target, (list, tuple)) or (isinstance(target, Tensor) and target.dim() == 1):
        values = list(target)
        if len(values) != n:
            fail(owner, "target", f"one target per text ({n})", f"{len(values)} targets", raw=True)
        return [one(v, i) for i, v in enumerate(values)]
    return [one(target, i) for i in range(n)]


def _progress(batches: list[list[int]], show: bool) -> Iterator[list[int]]:
    if not show:
        yield from batches
        return
    from tqdm.auto import tqdm

    with tqdm(total=sum(map(len, batches)), desc="explain_text", unit="input") as bar:
        for batch in batches:
            yield batch
            bar.update(len(batch))
