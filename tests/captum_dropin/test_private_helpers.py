"""Captum's private helpers that Captum's own tests use as oracles, at Captum's paths:
whybox's implementations behave like the installed Captum's, run side by side.

``captum._utils.gradient._forward_layer_eval``, ``captum._utils.progress``,
``captum.attr._utils.batching`` (``_tuple_splice_range``, ``_batched_generator``,
``_batched_operator``), ``captum.attr._utils.common._tensorize_baseline``,
``captum.attr._core.llm_attr._convert_ids_to_pretty_tokens`` (and its fallback), and the
``Tensor`` / ``Module`` that ``captum._utils.typing`` re-exports.
"""

from __future__ import annotations

import inspect
import io
import warnings

import pytest
import torch
from torch import nn

import whybox.attr as W
from whybox._utils import common as w_common
from whybox._utils import gradient as w_gradient
from whybox._utils import progress as w_progress
from whybox._utils import typing as w_typing
from whybox.attr._core import llm_attr as w_llm
from whybox.attr._utils import batching as w_batching
from whybox.attr._utils import common as w_attr_common

captum_gradient = pytest.importorskip("captum._utils.gradient")


class Net(nn.Module):
    """Two inputs, an extra argument, a layer returning a tuple, an in-place ReLU."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(2, 4)
        self.relu = nn.ReLU(inplace=True)
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        h = self.relu(self.a(x) + self.b(y))
        return self.out(h) * scale


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(5, 3, generator=gen), torch.randn(5, 2, generator=gen)


def _same(ours, theirs) -> None:
    assert type(ours) is type(theirs)
    assert len(ours) == len(theirs)
    for mine, other in zip(ours, theirs):
        if isinstance(other, tuple):
            _same(mine, other)
        else:
            torch.testing.assert_close(mine, other)


def test_typing_re_exports_torch_tensor_and_module():
    assert w_typing.Tensor is torch.Tensor
    assert w_typing.Module is nn.Module


@pytest.mark.parametrize("to_input", [False, True])
@pytest.mark.parametrize("layer_name", ["a", "relu", "out"])
def test_forward_layer_eval_matches_captum_for_one_layer(layer_name, to_input):
    model = Net().eval()
    layer = getattr(model, layer_name)
    inputs = _inputs()
    kwargs = dict(additional_forward_args=(2.0,), attribute_to_layer_input=to_input)
    ours = w_gradient._forward_layer_eval(model, inputs, layer, **kwargs)
    theirs = captum_gradient._forward_layer_eval(model, inputs, layer, **kwargs)
    _same(ours, theirs)
    assert not any(t.requires_grad for t in ours)


def test_forward_layer_eval_matches_captum_for_a_list_of_layers():
    model = Net().eval()
    layers = [model.a, model.b, model.out]
    inputs = _inputs()
    for to_input in (False, True):
        ours = w_gradient._forward_layer_eval(
            model, inputs, layers, attribute_to_layer_input=to_input
        )
        theirs = captum_gradient._forward_layer_eval(
            model, inputs, layers, attribute_to_layer_input=to_input
        )
        assert isinstance(ours, list) and len(ours) == 3
        _same(ours, theirs)


def test_forward_layer_eval_with_grad_enabled_gives_the_gradients_captum_gives():
    model = Net().eval()
    x, y = (t.clone().requires_grad_() for t in _inputs())

    def grads(evaluate):
        (value,) = evaluate(model, (x, y), model.relu, grad_enabled=True)
        return torch.autograd.grad(value[:, 1].sum(), (x, y))

    _same(grads(w_gradient._forward_layer_eval), grads(captum_gradient._forward_layer_eval))


def test_forward_layer_eval_on_a_layer_that_does_not_run_is_an_assertion_error():
    model = Net().eval()
    with pytest.raises(AssertionError, match="layer"):
        w_gradient._forward_layer_eval(model, _inputs(), nn.Linear(3, 4))
    with pytest.raises(AssertionError):
        captum_gradient._forward_layer_eval(model, _inputs(), nn.Linear(3, 4))


def test_format_input_is_format_tensor_into_tuples():
    x = torch.ones(2)
    assert w_common._format_input(x) == (x,)
    assert w_attr_common._format_input((x, x)) == (x, x)


def test_tensorize_baseline_matches_captum():
    captum_common = pytest.importorskip("captum.attr._utils.common")
    inputs = (torch.randn(4, 3), torch.randn(4, 2), torch.randn(4, 5))
    baselines = (0.5, torch.randn(1, 2), torch.randn(4, 5))
    ours = w_attr_common._tensorize_baseline(inputs, baselines)
    theirs = captum_common._tensorize_baseline(inputs, baselines)
    _same(ours, theirs)
    with pytest.raises(AssertionError):
        w_attr_common._tensorize_baseline(list(inputs), baselines)


def test_batching_helpers_match_captum():
    captum_batching = pytest.importorskip("captum.attr._utils.batching")
    x = torch.arange(12.0).reshape(6, 2).requires_grad_()
    y = torch.arange(18.0).reshape(6, 3)
    extra = (torch.arange(6.0), "keep", 3)
    target = [0, 1, 0, 1, 1, 0]
    spliced = w_batching._tuple_splice_range((x, "s", y), 1, 4)
    assert spliced[1] == "s"
    _same(
        (spliced[0], spliced[2]),
        tuple(
            t
            for t in captum_batching._tuple_splice_range((x, "s", y), 1, 4)
            if isinstance(t, torch.Tensor)
        ),
    )
    ours = list(w_batching._batched_generator((x, y), extra, target, 4))
    theirs = list(captum_batching._batched_generator((x, y), extra, target, 4))
    assert len(ours) == len(theirs) == 2
    for (oi, oa, ot), (ti, ta, tt) in zip(ours, theirs):
        _same(oi, ti)
        torch.testing.assert_close(oa[0], ta[0])
        assert oa[1:] == ta[1:] and ot == tt

    def operator(inputs, additional_forward_args, target_ind, scale):
        return inputs[0] * scale + additional_forward_args[0][:, None], torch.tensor(target_ind)

    ours = w_batching._batched_operator(operator, (x, y), extra, target, 4, scale=2.0)
    theirs = captum_batching._batched_operator(operator, (x, y), extra, target, 4, scale=2.0)
    _same(ours, theirs)
    for size in (0, -1, 1.5):
        with pytest.raises(AssertionError):
            w_batching._batched_operator(operator, x, internal_batch_size=size)


def test_batched_generator_warns_without_gradients_like_captum():
    with pytest.warns(UserWarning, match="no_grad"):
        list(w_batching._batched_generator(torch.ones(2, 2)))


def test_attribute_has_wrapped_like_captums_logged_attribute():
    for cls in (W.IntegratedGradients, W.LayerGradientShap, W.FeatureAblation, W.NoiseTunnel):
        wrapped = cls.attribute.__wrapped__
        assert inspect.getfullargspec(wrapped).args[:2] == ["self", "inputs"]
        assert inspect.signature(cls.attribute) == inspect.signature(wrapped)
        assert cls.attribute.__doc__ == wrapped.__doc__


def test_compute_convergence_delta_argument_errors_are_assertion_errors():
    model = nn.Linear(4, 2)
    gs = W.GradientShap(model)
    inputs, baselines = torch.randn(2, 4), torch.randn(4, 4)
    attributions = gs.attribute(inputs, baselines=baselines, target=0)
    with pytest.raises(AssertionError, match="start_point"):
        gs.compute_convergence_delta(attributions, inputs, baselines, target=0)


# -- progress ----------------------------------------------------------------------------
def test_progress_with_tqdm_labels_the_bar_like_captum():
    captum_progress = pytest.importorskip("captum._utils.progress")
    outputs = []
    for module in (w_progress, captum_progress):
        stream = io.StringIO()
        assert list(module.progress([1, 3, 5], desc="test progress", file=stream)) == [1, 3, 5]
        outputs.append(stream.getvalue())
    assert "test progress: " in outputs[0]
    # same bar, same text (tqdm's elapsed time / rate aside)
    assert outputs[0].split("|")[0] == outputs[1].split("|")[0]


def test_simple_progress_over_an_iterable_and_a_generator():
    for data, total in (([1, 3, 5], None), ((n for n in [1, 3, 5]), 3)):
        stream = io.StringIO()
        bar = w_progress.progress(data, desc="d", total=total, file=stream, use_tqdm=False)
        assert isinstance(bar, w_progress.SimpleProgress)
        assert list(bar) == [1, 3, 5]
        text = stream.getvalue()
        assert text.startswith("\rd: 0% 0/3")
        assert text.endswith("\rd: 100% 3/3\n")


def test_simple_progress_without_total_and_by_hand():
    stream = io.StringIO()
    assert list(w_progress.progress(iter([1, 2]), desc="d", file=stream, use_tqdm=False)) == [1, 2]
    assert stream.getvalue().startswith("\rd: ") and stream.getvalue().endswith("\rd: ...\n")
    stream = io.StringIO()
    with w_progress.progress(total=5, desc="d", file=stream, use_tqdm=False) as bar:
        for step in (0, 2, 2, 1):
            bar.update(step)
    assert stream.getvalue().startswith("\rd: 0% 0/5")
    assert stream.getvalue().endswith("\rd: 100% 5/5\n")
    assert stream.getvalue().count("\n") == 1  # closed once


def test_null_progress_is_silent_and_passes_items_through(capsys):
    bar = w_progress.NullProgress([1, 2], desc="x", total=2)
    assert isinstance(bar, w_progress.Progress)
    assert list(bar) == [1, 2] and list(w_progress.NullProgress()) == []
    with bar:
        assert bar.update(3) is None
    assert capsys.readouterr() == ("", "")


def test_disable_error_io_wrapper_ignores_a_closed_stream():
    stream = io.StringIO()
    wrapper = w_progress.DisableErrorIOWrapper(stream)
    assert wrapper.write("a") == 1
    stream.close()
    assert wrapper.write("b") is None
    assert wrapper.closed


# -- readable tokens ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def byte_level_tokenizer():
    """A byte-level BPE tokenizer built offline (emoji split over several ids)."""
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["running and jumping\nmeow meow", "one two three"] * 5, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>")


TEXTS = ["Running and jumping:\nMeow meow", "one two 😍 three\n😂😂", "plain words"]


@pytest.mark.parametrize("text", TEXTS)
def test_pretty_tokens_match_captum(byte_level_tokenizer, text):
    captum_llm = pytest.importorskip("captum.attr._core.llm_attr")
    ids = byte_level_tokenizer.encode(text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = w_llm._convert_ids_to_pretty_tokens(torch.tensor(ids), byte_level_tokenizer)
        theirs = captum_llm._convert_ids_to_pretty_tokens(torch.tensor(ids), byte_level_tokenizer)
    assert ours == theirs
    assert len(ours) == len(ids)
    assert not any("Ġ" in token for token in ours)


def test_pretty_tokens_fallback_matches_captum_on_whole_tokens(byte_level_tokenizer):
    captum_llm = pytest.importorskip("captum.attr._core.llm_attr")
    ids = byte_level_tokenizer.encode("Running and jumping:\nMeow meow")
    ours = w_llm._convert_ids_to_pretty_tokens_fallback(ids, byte_level_tokenizer)
    assert ours == captum_llm._convert_ids_to_pretty_tokens_fallback(ids, byte_level_tokenizer)
    assert "\\n" in ours


def test_pretty_tokens_fallback_joins_a_character_split_over_two_ids(byte_level_tokenizer):
    ids = byte_level_tokenizer.encode("é")  # two bytes, two ids in a byte-level vocabulary
    assert len(ids) == 2
    assert w_llm._convert_ids_to_pretty_tokens_fallback(ids, byte_level_tokenizer) == [
        "é",
        "é [OVERLAP]",
    ]
