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
  whybox (every target token from the same forward per chunk of path points, one backward
  per target token), and whybox's generic engine with one example per target token (what
  whybox ran before the shared forwards; each example its own forwards).

``--cases gradient`` (or ``ablation``) runs one family only (Captum's FeatureAblation on
a 200-token prompt takes minutes).

Forward calls are counted with a forward hook on the model; the prefix forwards of
whybox's KV-cache sharing count as calls. Times are CPU seconds (``time.process_time``)
on one torch thread, best of ``--repeats`` runs (one for Captum's slow cases). The goal
(issue 14): at least 5x fewer forwards and 3x less time than Captum's correct mode.
"""

from __future__ import annotations

import argparse
import functools
import random
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

from _harness import configure_threads, seed_all

WORDS = [f"w{i}" for i in range(996)]
GOAL_FORWARDS, GOAL_TIME = 5.0, 3.0


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
    """Counts the model's forward calls (Captum calls ``model.forward`` directly, which
    skips forward hooks: the instance's ``forward`` is wrapped instead)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls = 0
        self.model = model
        inner = type(model).forward.__get__(model)

        @functools.wraps(inner)  # keeps the signature whybox inspects
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return inner(*args, **kwargs)

        model.forward = counted

    def remove(self) -> None:
        del self.model.forward  # back to the class's forward


def measure(call: Callable[[], Any], model: torch.nn.Module, repeats: int) -> dict[str, Any]:
    """Best CPU seconds over ``repeats`` seeded runs, forward calls of one run, result."""
    best, result, calls = float("inf"), None, 0
    for _ in range(repeats):
        counter = Counter(model)
        seed_all()
        start = time.process_time()
        try:
            result = call()
        finally:
            counter.remove()
        best = min(best, time.process_time() - start)
        calls = counter.calls
    return {"seconds": best, "forwards": calls, "result": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompt", type=int, default=200, help="prompt words (tokens)")
    parser.add_argument("--generated", type=int, default=20, help="target tokens")
    parser.add_argument("--steps", type=int, default=20, help="LayerIG n_steps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="60-token prompt, 8 tokens")
    parser.add_argument("--cases", choices=("all", "ablation", "gradient"), default="all")
    args = parser.parse_args()
    if args.quick:
        args.prompt, args.generated, args.steps, args.repeats = 60, 8, 8, 1
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

    def whybox_lig(shared: bool = True) -> Any:
        lig = W.LayerIntegratedGradients(model, model.transformer.wte)
        explainer = LLMGradientAttribution(lig, tok)
        if not shared:  # the generic engine: one example (own forwards) per target token
            explainer._shared_path = lambda *_: None  # type: ignore[method-assign]
        return explainer.attribute(
            TextTokenInput(prompt, tok, **skip), target=target, n_steps=args.steps
        )

    print(
        f"GPT-2 4x256, prompt {args.prompt} tokens, target {args.generated} tokens, "
        f"{args.threads} thread(s), CPU seconds"
    )
    rows = []
    if args.cases in ("all", "ablation"):
        with torch.no_grad():
            reference = measure(lambda: captum_fa(False), model, 1)
            try:
                cached = measure(lambda: captum_fa(True), model, 1)
            except Exception as error:  # Captum's cached path can raise on transformers 5
                print(
                    f"Captum's default use_cached_outputs=True raised {type(error).__name__}: "
                    f"{error}"
                )
                cached = {"seconds": float("nan"), "forwards": 0, "result": None}
            ours = measure(lambda: whybox_fa(True), model, args.repeats)
            plain = measure(lambda: whybox_fa(False), model, args.repeats)
        rows.append(("FeatureAblation", "captum (use_cached_outputs=False)", reference, reference))
        rows.append(("FeatureAblation", "captum default (cached; wrong)", cached, reference))
        rows.append(("FeatureAblation", "whybox", ours, reference))
        rows.append(("FeatureAblation", "whybox, no prefix cache", plain, reference))
    if args.cases in ("all", "gradient"):
        lig_ref = measure(captum_lig, model, 1)
        lig_ours = measure(whybox_lig, model, args.repeats)
        lig_rows = measure(lambda: whybox_lig(False), model, args.repeats)
        case = f"LayerIG n_steps={args.steps}"
        rows.append((case, "captum", lig_ref, lig_ref))
        rows.append((case, "whybox", lig_ours, lig_ref))
        rows.append((case, "whybox, one example per token", lig_rows, lig_ref))

    print(f"{'case':<22} {'library':<34} {'forwards':>9} {'fewer':>7} {'seconds':>9} "
          f"{'faster':>7} {'max |diff|':>11}")  # fmt: skip
    misses = []
    for case, name, row, ref in rows:
        fewer = ref["forwards"] / row["forwards"] if row["forwards"] else float("nan")
        faster = ref["seconds"] / row["seconds"] if row["seconds"] == row["seconds"] else 0.0
        diff = float("nan")
        if row["result"] is not None and row["result"].token_attr is not None:
            diff = float((row["result"].token_attr - ref["result"].token_attr).abs().max())
        print(f"{case:<22} {name:<34} {row['forwards']:>9} {fewer:>6.1f}x "
              f"{row['seconds']:>9.2f} {faster:>6.1f}x {diff:>11.2e}")  # fmt: skip
        if name == "whybox" and case == "FeatureAblation":
            if fewer < GOAL_FORWARDS or faster < GOAL_TIME:
                misses.append(f"{case}: {fewer:.1f}x fewer forwards, {faster:.1f}x faster")
    if args.cases != "gradient":
        print("goals (FeatureAblation): >= 5x fewer forwards and >= 3x faster: "
              + ("met" if not misses else "MISSED: " + "; ".join(misses)))  # fmt: skip


if __name__ == "__main__":
    main()
