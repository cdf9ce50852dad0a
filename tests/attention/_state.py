"""Snapshots of everything a capture must leave as it was on a model."""

from __future__ import annotations

import json

import torch
from torch import nn


def hook_count(model: nn.Module) -> int:
    """Every forward / backward (pre-)hook on every submodule, with-kwargs ones included."""
    total = 0
    for module in model.modules():
        for name in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
            "_forward_hooks_with_kwargs",
            "_forward_pre_hooks_with_kwargs",
        ):
            total += len(getattr(module, name, {}) or {})
    return total


def snapshot(model: nn.Module) -> dict:
    """Parameters, flags, modes, hooks, attention setting and configs of ``model``."""
    configs = [m.config for m in model.modules() if hasattr(m, "config")]
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "buffers": {n: b.detach().clone() for n, b in model.named_buffers()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grads": [n for n, p in model.named_parameters() if p.grad is not None],
        "modes": [m.training for m in model.modules()],
        "hooks": hook_count(model),
        "attn": [c._attn_implementation for c in configs],
        "output_attentions": [c.output_attentions for c in configs],
        "configs": [json.dumps(c.to_dict(), sort_keys=True, default=str) for c in configs],
        "dicts": [sorted(vars(m)) for m in model.modules()],
    }


def assert_untouched(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    for name, value in before["params"].items():
        assert torch.equal(after["params"][name], value), name
    for name, value in before["buffers"].items():
        assert torch.equal(after["buffers"][name], value), name
    for key in ("requires_grad", "grads", "modes", "hooks", "attn", "output_attentions"):
        assert after[key] == before[key], key
    assert after["configs"] == before["configs"]
    # no attribute added to any module (e.g. transformers' "hooks installed" flag)
    assert after["dicts"] == before["dicts"]
