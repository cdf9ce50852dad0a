"""Bert_SQUAD_Interpret with ``captum`` renamed to ``whybox``, on a small local
``BertForQuestionAnswering`` built from a config (random weights, no download).

The tutorial's calls, in its order: ``LayerIntegratedGradients`` on ``model.bert.embeddings``
for the start and the end position (token type, position ids and attention mask as additional
forward arguments, the position index last), the summarised attributions in a
``VisualizationDataRecord`` / ``visualize_text`` table, ``LayerIntegratedGradients`` on the
three embedding sub-layers at once (tuple inputs and baselines), and ``LayerConductance`` of
every encoder layer on the whole embeddings. Each runs on Captum 0.9 and on whybox and the
numbers are compared.
"""

import re

import pytest
import torch

from tutorials._tut import assert_close, both, lib, patch_captum_text_view, seed

transformers = pytest.importorskip("transformers")

PAD, CLS, SEP = 0, 1, 2
#: [CLS] question [SEP] text [SEP]
QUESTION = [11, 12, 13]
TEXT = [21, 22, 23, 24, 25, 26]


@pytest.fixture(scope="module")
def qa():
    seed(0)
    config = transformers.BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        attn_implementation="eager",
    )
    model = transformers.BertForQuestionAnswering(config).eval()
    model.zero_grad()
    return model


def _pairs():
    """The tutorial's construct_input_ref_pair / _token_type_pair / _pos_id_pair."""
    ids = [CLS] + QUESTION + [SEP] + TEXT + [SEP]
    ref = [CLS] + [PAD] * len(QUESTION) + [SEP] + [PAD] * len(TEXT) + [SEP]
    input_ids, ref_input_ids = torch.tensor([ids]), torch.tensor([ref])
    sep_ind = len(QUESTION) + 1
    token_type_ids = torch.tensor([[0 if i <= sep_ind else 1 for i in range(len(ids))]])
    ref_token_type_ids = torch.zeros_like(token_type_ids)
    position_ids = torch.arange(len(ids)).unsqueeze(0)
    ref_position_ids = torch.zeros_like(position_ids)
    attention_mask = torch.ones_like(input_ids)
    return (
        input_ids,
        ref_input_ids,
        token_type_ids,
        ref_token_type_ids,
        position_ids,
        ref_position_ids,
        attention_mask,
    )


def _forward(model):
    def squad_pos_forward_func(
        inputs, token_type_ids=None, position_ids=None, attention_mask=None, position=0
    ):
        pred = model(
            inputs,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            attention_mask=attention_mask,
        )
        pred = (pred.start_logits, pred.end_logits)[position]
        return pred.max(1).values

    return squad_pos_forward_func


def summarize_attributions(attributions):
    attributions = attributions.sum(dim=-1).squeeze(0)
    return attributions / torch.norm(attributions)


def test_embeddings_lig_start_end_and_text_view(qa, monkeypatch):
    patch_captum_text_view(monkeypatch)
    ids, ref, tt, _, pos, _, mask = _pairs()
    forward = _forward(qa)
    tokens = [f"t{i}" for i in ids[0].tolist()]

    def run(name):
        A = lib(name, "captum.attr")
        lig = A.LayerIntegratedGradients(forward, qa.bert.embeddings)
        start, delta_start = lig.attribute(
            inputs=ids,
            baselines=ref,
            additional_forward_args=(tt, pos, mask, 0),
            return_convergence_delta=True,
        )
        end, delta_end = lig.attribute(
            inputs=ids,
            baselines=ref,
            additional_forward_args=(tt, pos, mask, 1),
            return_convergence_delta=True,
        )
        start_sum = summarize_attributions(start)
        out = qa(ids, token_type_ids=tt, position_ids=pos, attention_mask=mask)
        start_scores = out.start_logits
        record = A.visualization.VisualizationDataRecord(
            start_sum.detach(),
            torch.max(torch.softmax(start_scores[0], dim=0)),
            torch.argmax(start_scores),
            torch.argmax(start_scores),
            "6",
            start_sum.sum(),
            tokens,
            delta_start,
        )
        html = A.visualization.visualize_text([record]).data
        return (
            start.detach(),
            end.detach(),
            summarize_attributions(end).detach(),
            delta_start.detach(),
            delta_end.detach(),
            re.findall(r"hsl\([^)]*\)", html),
        )

    captum_out, whybox_out = both(run)
    assert_close(captum_out, whybox_out, atol=1e-6)
    # the attributions explain the score: completeness up to the reported delta
    start, delta_start = whybox_out[0], whybox_out[3]
    forward_value = _forward(qa)
    with torch.no_grad():
        gap = forward_value(ids, tt, pos, mask, 0) - forward_value(ref, tt, pos, mask, 0)
    torch.testing.assert_close(start.sum().reshape(1), gap + delta_start, atol=1e-5, rtol=1e-4)


def test_three_embedding_layers_at_once(qa):
    ids, ref, tt, ref_tt, pos, ref_pos, mask = _pairs()
    forward = _forward(qa)
    emb = qa.bert.embeddings

    def run(name):
        A = lib(name, "captum.attr")
        lig2 = A.LayerIntegratedGradients(
            forward, [emb.word_embeddings, emb.token_type_embeddings, emb.position_embeddings]
        )
        attrs = lig2.attribute(
            inputs=(ids, tt, pos),
            baselines=(ref, ref_tt, ref_pos),
            additional_forward_args=(mask, 0),
        )
        assert isinstance(attrs, list) and len(attrs) == 3
        return [a.detach() for a in attrs]

    captum_out, whybox_out = both(run)
    assert_close(captum_out, whybox_out, atol=1e-6)
    assert [a.shape for a in whybox_out] == [(1, ids.shape[1], 16)] * 3


def test_layer_conductance_of_every_encoder_layer(qa):
    ids, ref, tt, ref_tt, pos, ref_pos, mask = _pairs()

    def construct_whole_bert_embeddings():
        embeddings = qa.bert.embeddings
        return (
            embeddings(input_ids=ids, token_type_ids=tt, position_ids=pos).detach(),
            embeddings(input_ids=ref, token_type_ids=ref_tt, position_ids=ref_pos).detach(),
        )

    def squad_pos_forward_func2(input_emb, attention_mask=None, position=0):
        pred = qa(inputs_embeds=input_emb, attention_mask=attention_mask)
        return pred[position].max(1).values

    input_embeddings, ref_input_embeddings = construct_whole_bert_embeddings()

    def run(name):
        A = lib(name, "captum.attr")
        layer_attrs_start = []
        for i in range(qa.config.num_hidden_layers):
            lc = A.LayerConductance(squad_pos_forward_func2, qa.bert.encoder.layer[i])
            layer_attributions_start = lc.attribute(
                inputs=input_embeddings,
                baselines=ref_input_embeddings,
                additional_forward_args=(mask, 0),
            )
            layer_attrs_start.append(
                summarize_attributions(layer_attributions_start).cpu().detach().tolist()
            )
        return torch.tensor(layer_attrs_start)

    captum_out, whybox_out = both(run)
    assert_close(captum_out, whybox_out, atol=1e-5)
    assert whybox_out.shape == (2, ids.shape[1])
