"""Engine behaviours: dict inputs, extra forward args, progress bars, hooks, chunk sizing."""

import pytest
import torch
from torch import nn

from _support import module_hook_count
from whybox.core.forward import auto_chunk_rows, resolve_chunk_rows
from whybox.core.hooks import capture, override
from whybox.core.validation import ParameterError
from whybox.methods import IntegratedGradients, Saliency


class KeywordModel(nn.Module):
    """Takes keyword inputs like a Hugging Face model."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(2, 3)

    def forward(self, *, image, meta, bias=0.0):
        return self.a(image) + self.b(meta) + bias


def test_dict_inputs_call_the_model_by_keyword_and_come_back_as_dict():
    torch.manual_seed(0)
    model = KeywordModel()
    inputs = {"image": torch.randn(3, 4), "meta": torch.randn(3, 2)}
    result = IntegratedGradients(model).attribute(
        inputs, target=1, n_steps=5, forward_args={"bias": 2.0}
    )
    assert isinstance(result.attributions, dict) and list(result.attributions) == ["image", "meta"]
    # linear model: IG = x * w exactly
    torch.testing.assert_close(result.attributions["image"], inputs["image"] * model.a.weight[1])
    torch.testing.assert_close(result.attributions["meta"], inputs["meta"] * model.b.weight[1])


def test_batched_extra_args_follow_rows_and_others_pass_through():
    seen = []

    def model(x, per_example, shared, flag):
        seen.append((per_example.shape[0], shared.shape[0], flag))
        assert per_example.shape[0] == x.shape[0]
        return (x * per_example).sum(1) + shared.sum() * 0

    x = torch.randn(3, 5)
    per_example = torch.tensor([[1.0], [2.0], [3.0]])
    shared = torch.ones(5)
    result = IntegratedGradients(model).attribute(
        x, forward_args=(per_example, shared, "on"), n_steps=4, chunk_size=5
    )
    torch.testing.assert_close(result.attributions, x * per_example)
    assert all(s == 5 and flag == "on" for _, s, flag in seen)  # shared tensor untouched
    assert max(rows for rows, _, _ in seen) <= 5  # chunks of at most 5 rows


def test_show_progress_draws_a_bar(capsys):
    model = nn.Linear(4, 2)
    Saliency(model).attribute(torch.randn(6, 4), target=0, chunk_size=2, show_progress=True)
    err = capsys.readouterr().err
    assert "Saliency" in err and "6/6" in err


def test_capture_and_override_remove_hooks_after_errors():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))
    with pytest.raises(RuntimeError, match="inside"):
        with capture([model[0], model[2]]) as captured:
            model(torch.randn(2, 3))
            assert [len(t) for t in captured.per_layer] == [1, 1]
            raise RuntimeError("inside")
    assert module_hook_count(model) == 0
    with override(model[1], lambda out: torch.zeros_like(out)):
        assert torch.equal(model(torch.randn(2, 3)), model[2].bias.expand(2, 1))
    assert module_hook_count(model) == 0


def test_chunk_size_resolution():
    big = torch.zeros(1, 3, 224, 224)
    small = torch.zeros(1, 12)
    assert 8 <= resolve_chunk_rows("auto", (big,), owner="T") <= 64
    assert resolve_chunk_rows("auto", (small,), owner="T") >= 1024
    assert resolve_chunk_rows(17, (small,), owner="T") == 17
    assert auto_chunk_rows(10**9, torch.device("cpu")) >= 1
    with pytest.raises(ParameterError, match="'chunk_size' parameter of T"):
        resolve_chunk_rows(0, (small,), owner="T")


def test_layer_path_auto_chunk_counts_the_layer_values():
    # token ids are a few bytes per row, but every LayerIG row also carries a 128 x 384
    # embedding path point: "auto" must size chunks by both, or all steps run at once
    class Text(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(50, 384)
            self.fc = nn.Linear(384, 2)

        def forward(self, ids):
            return self.fc(self.embedding(ids).mean(1))

    model = Text()
    rows_seen = []
    handle = model.fc.register_forward_hook(lambda m, i, o: rows_seen.append(o.shape[0]))
    try:
        ids = torch.randint(0, 50, (1, 128))
        IntegratedGradients(model, layer=model.embedding).attribute(ids, target=0, n_steps=50)
        auto_rows = max(rows_seen[:-1])  # the last forward is the completeness check
        rows_seen.clear()
        IntegratedGradients(model, layer=model.embedding).attribute(
            ids, target=0, n_steps=50, chunk_size=25, return_delta=False
        )
    finally:
        handle.remove()
    assert auto_rows <= 16
    assert max(rows_seen) == 25  # an explicit chunk size is kept


def test_model_outputs_with_logits_are_explained_like_their_logits():
    # Hugging Face models return a ModelOutput (attribute and key access to "logits")
    from dataclasses import dataclass

    import whybox

    @dataclass
    class Output:
        logits: torch.Tensor

    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    x = torch.randn(5, 4)
    plain = whybox.explain(net, x, method="saliency", target=2).attributions
    as_object = whybox.explain(lambda v: Output(net(v)), x, method="saliency", target=2)
    as_dict = whybox.explain(lambda v: {"logits": net(v)}, x, method="saliency", target=2)
    torch.testing.assert_close(as_object.attributions, plain)
    torch.testing.assert_close(as_dict.attributions, plain)
    with pytest.raises(TypeError, match="'forward_func' parameter"):
        whybox.explain(lambda v: (net(v), net(v)), x, method="saliency", target=2)
