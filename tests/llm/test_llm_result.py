"""The result object: Captum's fields and checks, plots, HTML view, aggregation; image
inputs end to end."""

import matplotlib
import numpy as np
import pytest
import torch

import whybox.attr as A
from whybox.attr._llm import ImageMaskInput, LLMAttribution, LLMAttributionResult
from whybox.llm import LLMPerturbation, TextTokenInput, word_groups

matplotlib.use("Agg")


def _result(**overrides):
    fields = dict(
        input_tokens=["a", "<b>", "c"],
        output_tokens=["x", "y"],
        seq_attr=[1.0, -2.0, 0.5],
        token_attr=[[1.0, 0.0, 0.5], [0.0, -2.0, 0.0]],
    )
    fields.update(overrides)
    return LLMAttributionResult(**fields)


def test_fields_are_tensors_and_checked():
    result = _result(output_probs=[0.9, 0.8])
    assert result.seq_attr.shape == (3,) and result.token_attr.shape == (2, 3)
    assert result.seq_attr_dict == {"a": 1.0, "<b>": -2.0, "c": 0.5}
    with pytest.raises(ValueError, match="seq_attr"):
        _result(seq_attr=[1.0, 2.0])
    with pytest.raises(ValueError, match="token_attr"):
        _result(token_attr=[[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="output_probs"):
        _result(output_probs=[0.5])
    assert _result(token_attr=None).token_attr is None


def test_aggregate_sums_groups():
    result = _result().aggregate([0, 1, 0])
    assert result.input_tokens == ["a c", "<b>"]
    assert result.seq_attr.tolist() == [1.5, -2.0]
    assert result.token_attr.tolist() == [[1.5, 0.0], [0.0, -2.0]]
    with pytest.raises(ValueError, match="groups"):
        _result().aggregate([0, 1])


def test_plots_return_figure_and_axes():
    import matplotlib.pyplot as plt

    result = _result()
    for plot in (result.plot_token_attr, result.plot_seq_attr):
        fig, ax = plot()
        assert ax.get_xticklabels()[1].get_text() == "<b>"
        plt.close(fig)
    with pytest.raises(ValueError, match="plot_seq_attr"):
        _result(token_attr=None).plot_token_attr()
    with pytest.raises(ValueError, match="ImageMaskInput"):
        result.plot_image_heatmap()


def test_html_view_is_self_contained_and_escaped(tmp_path):
    result = _result(input_tokens=["a", "<script>", "&"], output_probs=[0.5, 0.25])
    view = result.to_html()
    assert "&lt;script&gt;" in view.data and "<script>" not in view.data
    assert "&amp;" in view.data and "p=0.25" in view.data
    page = result.to_html(full_page=True)
    assert page.startswith("<!DOCTYPE html>") and "http" not in page
    assert result._repr_html_() == view.data
    view.save(tmp_path / "view.html")
    assert (tmp_path / "view.html").read_text().startswith("<!DOCTYPE html>")


def _subword_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "un": 1, "##believ": 2, "##able": 3, "dog": 4, "!": 5}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def test_tokens_group_into_words():
    tok = _subword_tokenizer()
    inp = TextTokenInput("unbelievable dog! dog", tok)
    assert inp.values == ["un", "##believ", "##able", "dog", "!", "dog"]
    mask, words = word_groups(inp)
    # a word: the feature tokens between two whitespaces
    assert mask.tolist() == [[0, 0, 0, 1, 1, 2]] and words == ["unbelievable", "dog!", "dog"]
    result = LLMAttributionResult(
        input_tokens=inp.values, output_tokens=["z"], seq_attr=[1.0, 2, 3, 4, 5, 6], inp=inp
    )
    words_result = result.to_words()
    assert words_result.input_tokens == words and words_result.seq_attr.tolist() == [6, 9, 6]


def test_perturbing_words_together(toy, prompt):
    model, tok = toy
    inp = TextTokenInput(prompt, tok, skip_tokens=["<bos>"])
    mask = torch.tensor([[0, 1, 0, 0, 2, 0, 3]])  # distractors / K5 / K2 / "?"
    result = LLMPerturbation(model, tok).attribute(inp, target="V5 V2", feature_mask=mask)
    # grouped features share their attribution, reported per token
    assert result.token_attr[0, 0] == result.token_attr[0, 2] == result.token_attr[0, 5]
    assert result.token_attr.argmax(dim=1).tolist() == [1, 4]


def test_image_input_end_to_end(toy):
    from PIL import Image

    model, tok = toy
    pixels = torch.zeros(4, 6, 3, dtype=torch.uint8)
    pixels[:, :3] = torch.tensor([200, 10, 10], dtype=torch.uint8)  # left: red
    pixels[:, 3:] = torch.tensor([10, 10, 200], dtype=torch.uint8)  # right: blue
    image = Image.fromarray(pixels.numpy())

    def processor(img):
        # a "multimodal" front end: each coloured half of the image names a key
        array = np.asarray(img)
        left = "K5" if array[0, 0, 0] == 200 else "<unk>"
        right = "K2" if array[0, 5, 2] == 200 else "<unk>"
        return f"d3 {left} d1 {right} ?"

    mask = torch.zeros(4, 6, dtype=torch.int32)
    mask[:, 3:] = 7
    inp = ImageMaskInput(image, mask=mask, processor_fn=processor)
    assert inp.values == ["image_feature_0", "image_feature_7"]
    result = LLMAttribution(A.FeatureAblation(model), tok).attribute(inp, target="V5 V2")
    assert result.token_attr.argmax(dim=1).tolist() == [0, 1]
    pixel = inp.format_pixel_attr(result.seq_attr.unsqueeze(0))
    assert pixel.shape == (1, 4, 6) and pixel[0, 0, 0] == result.seq_attr[0]
    import matplotlib.pyplot as plt

    fig, _ = result.plot_image_heatmap(target_token_pos=(0, 2))
    plt.close(fig)
    fig, _ = inp.plot_mask_overlay(border_width=1)
    plt.close(fig)
