"""A toy causal LM whose correct attributions are known, built offline in seconds.

The language: ``<bos> d3 K5 d1 <unk> K2 d0 ?`` -> ``V5 V2 .``: a prompt of distractors
(``d0``-``d9``, sometimes ``<unk>``) holding two distinct keys (``K0``-``K7``), then the
values of the keys in the order they appear. So the first generated token depends on the
first key only and the second on the second key: an attribution method must point the
first value at the first key, and "why V5 rather than V2" separates the two keys.

The tokenizer is a word-level ``tokenizers`` model (whitespace split, ``<bos>`` prepended)
wrapped in ``transformers.PreTrainedTokenizerFast``; the model a 2-layer GPT-2.

The trained weights are committed beside this file (``toy-lm-<digest>.pt``, keyed by a hash
of the recipe): training is seeded but not reproducible across machines (CPU kernels and
``transformers``' initialisation differ), and the tests of what the model's attention does
describe one fixed model. ``python tests/llm/_toy.py`` trains it again and writes that file;
a changed recipe without a committed file trains once per machine into the temp directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import tempfile
from pathlib import Path

import torch

N_DISTRACTORS = 10
N_KEYS = 8
SPECIAL = ["<unk>", "<bos>", "?", "."]
VOCAB = (
    SPECIAL
    + [f"d{i}" for i in range(N_DISTRACTORS)]
    + [f"K{i}" for i in range(N_KEYS)]
    + [f"V{i}" for i in range(N_KEYS)]
)
RECIPE = {"steps": 600, "batch": 64, "lr": 6e-3, "n_embd": 64, "n_layer": 2, "n_head": 4}


def tokenizer():
    """Word-level tokenizer over :data:`VOCAB`; ``encode`` prepends ``<bos>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", 1)]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # words joined by spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token=".",
        clean_up_tokenization_spaces=False,
    )


def sample(rng: random.Random) -> tuple[str, str]:
    """One ``(prompt, answer)`` pair of the toy language."""
    length = rng.randint(4, 8)
    words = [
        "<unk>" if rng.random() < 0.15 else f"d{rng.randrange(N_DISTRACTORS)}"
        for _ in range(length)
    ]
    first, second = rng.sample(range(N_KEYS), 2)
    i, j = sorted(rng.sample(range(length), 2))
    words[i], words[j] = f"K{first}", f"K{second}"
    return " ".join(words) + " ?", f"V{first} V{second} ."


def _batch(rng: random.Random, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``(size, 13)`` right-padded with ``<unk>`` and the answer labels."""
    index = {w: i for i, w in enumerate(VOCAB)}
    ids = torch.zeros(size, 13, dtype=torch.long)
    labels = torch.full_like(ids, -100)
    for r in range(size):
        prompt, answer = sample(rng)
        row = [1] + [index[w] for w in prompt.split()]
        target = [index[w] for w in answer.split()]
        ids[r, : len(row) + 3] = torch.tensor(row + target)
        labels[r, len(row) : len(row) + 3] = torch.tensor(target)
    return ids, labels


def _config():
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=len(VOCAB),
        n_positions=32,
        n_embd=RECIPE["n_embd"],
        n_layer=RECIPE["n_layer"],
        n_head=RECIPE["n_head"],
        bos_token_id=1,
        eos_token_id=3,
        pad_token_id=0,
    )


def _train() -> dict:
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    rng = random.Random(0)
    model = GPT2LMHeadModel(_config())
    optimiser = torch.optim.AdamW(model.parameters(), lr=RECIPE["lr"], weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=RECIPE["lr"], total_steps=RECIPE["steps"]
    )
    model.train()
    for _ in range(RECIPE["steps"]):
        ids, labels = _batch(rng, RECIPE["batch"])
        loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    return model.state_dict()


def model_and_tokenizer():
    """The trained toy model (eval mode) and its tokenizer: the committed weights, or
    weights trained once into the temp directory when the recipe has none committed."""
    tok = tokenizer()
    committed = _committed_path()
    if committed.exists():
        return _load(committed), tok
    path = Path(tempfile.gettempdir()) / f"whybox-{committed.name}"
    # one worker trains while the others wait on the lock, then everyone reads the file
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # deterministic, whatever the worker's settings
            try:
                state = _train()
            finally:
                torch.set_num_threads(threads)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            torch.save(state, partial)
            os.replace(partial, path)
    return _load(path), tok


def _committed_path() -> Path:
    digest = hashlib.sha256(repr((RECIPE, VOCAB, 2)).encode()).hexdigest()[:12]
    return Path(__file__).with_name(f"toy-lm-{digest}.pt")


def _load(path: Path):
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel(_config())
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


if __name__ == "__main__":  # retrain and write the committed weights
    torch.set_num_threads(1)
    torch.save(_train(), _committed_path())
    print(f"wrote {_committed_path()}")
