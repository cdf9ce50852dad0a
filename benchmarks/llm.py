"""Time whybox's LLM attribution against Captum 0.9's: forward calls and seconds.

    .venv/bin/python benchmarks/llm.py            # 200-token prompt, 20 generated tokens
    .venv/bin/python benchmarks/llm.py --quick    # 60-token prompt, 8 tokens (smoke run)

Workload: a GPT-2 built from a config (4 layers, 256 wide, 1000-word vocabulary, random
weights: speed does not depend on them) and a word-level tokenizer; the prompt is
``--prompt`` random words (one token each plus ``<bos>``), the target ``--generated``
tokens. Cases, each on the same model and input:

* ``LLMAttribution(FeatureAblation)`` -- Captum with ``use_cached_outputs=False`` (its
  correct mode; one forward per target token per perturbation), Captum's default
  ``use_cached_outputs=True`` (wrong numbers on transformers 5, timed for reference),
  whybox's defaults (teacher forcing, batched perturbations, shared-prefix KV cache), and
  whybox without the prefix cache;
* ``LLMGradientAttribution(LayerIntegratedGradients)`` with ``n_steps=--steps``: Captum,
  whybox (every target token from the same forwards per chunk of path points, split
  before the prompt's last token, on a private copy with fused activations and oneDNN
  linear layers; one backward per target token per chunk), the same with the copy's
  linear layers left on MKL (the previous state, for the before / after), and whybox's
  generic engine with one example per target token;
* ``LLMGradientAttribution(LayerGradientShap)`` with ``n_samples=--samples`` and a zero
  baseline: Captum, whybox's facade (Captum's draws, then the shared samples) and the
  shared samples called directly (:func:`whybox.llm.gradient.captum_gradient_shap_draws`
  and :func:`~whybox.llm.gradient.shared_sample_attributions`). Captum 0.9 scores other
  tokens than the targets after the first one here (it expands its target tokens with the
  samples), so only the first token's numbers are compared.

``--cases ablation``, ``gradient`` (both gradient families) or ``shap`` run a subset
(Captum's FeatureAblation on a 200-token prompt takes minutes).

Forward calls are counted with a forward hook on the base model (``model.transformer``);
the prefix forwards of whybox's KV-cache sharing and split forwards count as calls. Times
are CPU seconds (``time.process_time``) on one torch thread, the best of interleaved
rounds (every library's round 1, then round 2, ...): ``--repeats`` rounds for whybox's
calls, ``--captum-repeats`` for the slow ones. The goal
(issue 14): at least 5x fewer forwards and 3x less time than Captum's correct mode.
``--write`` replaces the table in ``benchmarks/results-llm.md`` (between its
``results:begin`` / ``results:end`` markers; the notes around it are kept).
"""

from __future__ import annotations

import argparse
import functools
import platform
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from _harness import configure_threads, seed_all

WORDS = [f"w{i}" for i in range(996)]
GOAL_FORWARDS, GOAL_TIME = 5.0, 3.0
RESULTS = Path(__file__).with_name("results-llm.md")
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def build(vocab_words: list[str]) -> tuple[Any, Any]:
    """A random-weight GPT-2 and a word-level tokenizer over ``vocab_words``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = ["<unk>", "<bos>", "?", "."] + vocab_words
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", 1)]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<bos>", eos_token=".",
        clean_up_tokenization_spaces=False,
    )  # fmt: skip
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(vocab), n_positions=512, n_embd=256, n_layer=4, n_head=4,
        bos_token_id=1, eos_token_id=3, pad_token_id=0,
    )  # fmt: skip
    return GPT2LMHeadModel(config).eval(), tokenizer


class Counter:
    """Counts the model's forwards: a forward hook on its base model (``model.transformer``),
    which every forward calls through ``__call__`` even when Captum calls
    ``model.forward`` directly. The hook is a plain function, so a private copy of the model
    (whybox's fused-activation copy shares it) counts into the same list."""

    def __init__(self, model: torch.nn.Module) -> None:
        calls: list[int] = []
        self._calls = calls
        self._handle = model.base_model.register_forward_hook(lambda *_: calls.append(1))

    @property
    def calls(self) -> int:
        return len(self._calls)

    def remove(self) -> None:
        self._handle.remove()


def interleaved(
    calls: dict[str, Callable[[], Any]], model: torch.nn.Module, rounds: dict[str, int]
) -> dict[str, dict[str, Any]]:
    """Each call's best CPU seconds over its rounds, run interleaved (round 1 of every
    call, then round 2, ...: a load change on the shared machine hits all of them), its
    forwards and result from the first round (each run seeded)."""
    out: dict[str, dict[str, Any]] = {
        name: {"seconds": float("inf"), "forwards": 0, "result": None, "times": []}
        for name in calls
    }
    for r in range(max(rounds.values())):
        for name, call in calls.items():
            if r >= rounds[name]:
                continue
            counter = Counter(model)
            seed_all()
            start = time.process_time()
            try:
                result = call()
            except Exception as error:  # Captum's cached path can raise on transformers 5
                print(f"{name} raised {type(error).__name__}: {error}")
                out[name]["seconds"] = float("nan")
                out[name]["error"] = type(error).__name__
                continue
            finally:
                counter.remove()
            seconds = time.process_time() - start
            out[name]["times"].append(seconds)
            out[name]["seconds"] = min(out[name]["seconds"], seconds)
            if r == 0:
                out[name]["forwards"], out[name]["result"] = counter.calls, result
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompt", type=int, default=200, help="prompt words (tokens)")
    parser.add_argument("--generated", type=int, default=20, help="target tokens")
    parser.add_argument("--steps", type=int, default=20, help="LayerIG n_steps")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of whybox's calls")
    parser.add_argument(
        "--captum-repeats", type=int, default=2, help="rounds of the slow (Captum) calls"
    )
    parser.add_argument("--samples", type=int, default=5, help="GradientSHAP n_samples")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="60-token prompt, 8 tokens")
    parser.add_argument("--cases", choices=("all", "ablation", "gradient", "shap"), default="all")
    parser.add_argument("--write", action="store_true", help=f"update the table in {RESULTS.name}")
    args = parser.parse_args()
    if args.quick:
        args.prompt, args.generated, args.steps = 60, 8, 8
        args.repeats, args.captum_repeats = 1, 1
    configure_threads(args.threads)
    warnings.filterwarnings("ignore")
    import captum.attr as C

    import whybox.attr as W
    from whybox.attr._llm import LLMAttribution, LLMGradientAttribution, TextTokenInput

    model, tok = build(WORDS)
    rng = random.Random(0)
    prompt = " ".join(rng.choice(WORDS) for _ in range(args.prompt))
    target = torch.tensor(tok.encode(" ".join(rng.choice(WORDS) for _ in range(args.generated)),
                                     add_special_tokens=False))  # fmt: skip
    skip = {"skip_tokens": ["<bos>"]}

    def captum_fa(cached: bool) -> Any:
        explainer = C.LLMAttribution(C.FeatureAblation(model), tok)
        return explainer.attribute(
            C.TextTokenInput(prompt, tok, **skip), target=target, use_cached_outputs=cached
        )

    def whybox_fa(prefix_cache: bool) -> Any:
        import whybox.llm.scoring as scoring

        explainer = LLMAttribution(W.FeatureAblation(model), tok)
        if not prefix_cache:
            explainer._scorer = lambda: scoring.TeacherForcing(  # type: ignore[method-assign]
                model, tok, prefix_cache=False
            )
        return explainer.attribute(TextTokenInput(prompt, tok, **skip), target=target)

    def captum_lig() -> Any:
        lig = C.LayerIntegratedGradients(model, model.transformer.wte)
        return C.LLMGradientAttribution(lig, tok).attribute(
            C.TextTokenInput(prompt, tok, **skip), target=target, n_steps=args.steps
        )

    def whybox_lig(shared: bool = True, onednn: bool = True) -> Any:
        import whybox.llm._fused as fused
        import whybox.llm.gradient as gradient

        lig = W.LayerIntegratedGradients(model, model.transformer.wte)
        explainer = LLMGradientAttribution(lig, tok)
        if not shared:  # the generic engine: one example (own forwards) per target token
            explainer._shared_path = lambda *_: None  # type: ignore[method-assign]
        if not onednn:  # the private copy's linear layers left on MKL (the previous state)
            gradient.fused_twin = functools.partial(fused.fused_twin, linears=False)
        try:
            return explainer.attribute(
                TextTokenInput(prompt, tok, **skip), target=target, n_steps=args.steps
            )
        finally:
            gradient.fused_twin = fused.fused_twin

    m = len(tok.encode(prompt)) - 1  # prompt features (<bos> skipped)
    shap_options = {"baselines": torch.zeros(1, m), "n_samples": args.samples}

    def captum_shap() -> Any:
        gs = C.LayerGradientShap(model, model.transformer.wte)
        return C.LLMGradientAttribution(gs, tok).attribute(
            C.TextTokenInput(prompt, tok, **skip), target=target, **shap_options
        )

    def whybox_shap() -> Any:  # the facade: Captum's draws, then the shared samples
        gs = W.LayerGradientShap(model, model.transformer.wte)
        return LLMGradientAttribution(gs, tok).attribute(
            TextTokenInput(prompt, tok, **skip), target=target, **shap_options
        )

    def whybox_shap_shared() -> Any:  # Captum's draws, then the shared samples
        from whybox.llm.gradient import (
            TokenLogProbs,
            captum_gradient_shap_draws,
            shared_sample_attributions,
            token_attributions,
        )

        inp = TextTokenInput(prompt, tok, **skip)
        game = TokenLogProbs(model, inp, target)
        points, starts, ends = captum_gradient_shap_draws(
            inp.to_tensor(), shap_options["baselines"], n_samples=args.samples, stdevs=0.0,
            n_targets=len(target),
        )  # fmt: skip
        layer_attr = shared_sample_attributions(
            game, model.transformer.wte, points=points, starts=starts, ends=ends
        )
        token = token_attributions(layer_attr, game)
        return SimpleNamespace(token_attr=token)

    header = (
        f"GPT-2 4x256, prompt {args.prompt} tokens, target {args.generated} tokens, "
        f"{args.threads} thread(s), CPU seconds, best and median of interleaved rounds "
        f"(--repeats {args.repeats}; Captum's slow cases --captum-repeats {args.captum_repeats}); "
        f"torch {torch.__version__}, {cpu_name()}"
    )
    print(header)
    rows = []
    goals = []  # (case, reference library, whybox library)
    slow = args.captum_repeats
    if args.cases in ("all", "ablation"):
        with torch.no_grad():
            got = interleaved(
                {
                    "captum (use_cached_outputs=False)": lambda: captum_fa(False),
                    "captum default (cached; wrong)": lambda: captum_fa(True),
                    "whybox": lambda: whybox_fa(True),
                    "whybox, no prefix cache": lambda: whybox_fa(False),
                },
                model,
                {
                    "captum (use_cached_outputs=False)": slow,
                    "captum default (cached; wrong)": slow,
                    "whybox": args.repeats,
                    "whybox, no prefix cache": args.repeats,
                },
            )
        ref = got["captum (use_cached_outputs=False)"]
        rows += [("FeatureAblation", name, row, ref, None) for name, row in got.items()]
        goals.append(("FeatureAblation", got["whybox"], ref))
    if args.cases in ("all", "gradient"):
        got = interleaved(
            {
                "captum": captum_lig,
                "whybox": whybox_lig,
                "whybox, linears on MKL": lambda: whybox_lig(onednn=False),
                "whybox, one example per token": lambda: whybox_lig(False),
            },
            model,
            {
                "captum": slow,
                "whybox": args.repeats,
                "whybox, linears on MKL": args.repeats,
                "whybox, one example per token": slow,
            },
        )
        case = f"LayerIG n_steps={args.steps}"
        rows += [(case, name, row, got["captum"], None) for name, row in got.items()]
        goals.append((case, got["whybox"], got["captum"]))
    if args.cases in ("all", "gradient", "shap"):
        got = interleaved(
            {
                "captum": captum_shap,
                "whybox facade": whybox_shap,
                "whybox shared samples": whybox_shap_shared,
            },
            model,
            {"captum": slow, "whybox facade": args.repeats, "whybox shared samples": args.repeats},
        )  # fmt: skip
        case = f"LayerGradientShap n={args.samples}"
        # Captum 0.9 scores other tokens than the targets after the first (it expands its
        # target tokens with the samples): the difference is taken on the first token
        rows += [(case, name, row, got["captum"], 1) for name, row in got.items()]
        goals.append((case, got["whybox facade"], got["captum"]))

    print(f"{'case':<24} {'library':<34} {'forwards':>9} {'fewer':>7} {'seconds':>9} "
          f"{'median':>9} {'faster':>7} {'max |diff|':>11}")  # fmt: skip
    table = [
        "| case | library | forwards | fewer | seconds (best) | median | faster | max \\|diff\\| |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case, name, row, ref, first in rows:
        if "error" in row:
            print(f"{case:<24} {name:<34} raised {row['error']}")
            table.append(f"| {case} | {name} | raised `{row['error']}` | | | | | |")
            continue
        fewer = ref["forwards"] / row["forwards"] if row["forwards"] else float("nan")
        faster = ref["seconds"] / row["seconds"]
        median = statistics.median(row["times"])
        diff = float("nan")
        if row["result"] is not None and row["result"].token_attr is not None:
            ours, theirs = row["result"].token_attr, ref["result"].token_attr
            diff = float((ours[:first] - theirs[:first]).abs().max())
        shown = "0" if diff == 0 else f"{diff:.1e}"
        shown += " (token 0)" if first is not None else ""
        print(f"{case:<24} {name:<34} {row['forwards']:>9} {fewer:>6.1f}x "
              f"{row['seconds']:>9.2f} {median:>9.2f} {faster:>6.1f}x {diff:>11.2e}")  # fmt: skip
        table.append(f"| {case} | {name} | {row['forwards']} | {fewer:.1f}x | "
                     f"{row['seconds']:.2f} | {median:.2f} | {faster:.1f}x | {shown} |")  # fmt: skip
    table.append("")
    for case, ours, ref in goals:
        fewer = ref["forwards"] / max(ours["forwards"], 1)
        faster = ref["seconds"] / ours["seconds"]
        met = fewer >= GOAL_FORWARDS and faster >= GOAL_TIME
        line = (f"{case}: {fewer:.1f}x fewer forwards (>= {GOAL_FORWARDS:.0f}x), "
                f"{faster:.1f}x faster (>= {GOAL_TIME:.0f}x): {'met' if met else 'MISSED'}")  # fmt: skip
        print(f"goal {line}")
        table.append(f"* goal {line}")
    if args.write:
        write_table(table, header)


def cpu_name() -> str:
    """The CPU's model name (the oneDNN / MKL gap depends on it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_table(table: list[str], header: str) -> None:
    """Replace the text between :data:`BEGIN` and :data:`END` in :data:`RESULTS`."""
    text = RESULTS.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{RESULTS} has no {BEGIN} ... {END} block to replace")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    command = " ".join([".venv/bin/python benchmarks/llm.py", *sys.argv[1:]])
    block = [BEGIN, f"`{command}`: {header}.", "", *table, END]
    RESULTS.write_text(head + "\n".join(block) + tail)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
