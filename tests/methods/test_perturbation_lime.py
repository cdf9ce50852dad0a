"""LIME / LimeBase: surrogate recovery, exhaustive sampling, Lasso sparsity, and the seed's
image and text flows (seed 000) on small local models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from whybox.core.masks import relabel_contiguous
from whybox.core.surrogate import WeightedLinearRegression
from whybox.core.validation import ParameterError
from whybox.methods.lime import Lime as NativeLime
from whybox.methods.lime import (
    LimeBase as NativeLimeBase,
)
from whybox.methods.lime import (
    baseline_token_transform,
    token_removal_transform,
)

try:  # the public names (seed code changes only its imports)
    from whybox.attr import (
        KernelShap,
        Lime,
        LimeBase,
        SkLearnLasso,
        SkLearnLinearRegression,
        get_exp_kernel_similarity_function,
    )
except ImportError:  # until whybox.attr re-exports the perturbation family
    from whybox.attr._perturbation import (
        KernelShap,
        Lime,
        LimeBase,
        SkLearnLasso,
        SkLearnLinearRegression,
        get_exp_kernel_similarity_function,
    )


def _linear(weights, bias=0.5):
    def forward(x):
        return x @ weights + bias

    return forward


def test_lime_on_a_linear_model_recovers_its_coefficients():
    torch.manual_seed(0)
    weights = torch.randn(6, dtype=torch.float64)
    x = torch.randn(2, 6, dtype=torch.float64)
    result = NativeLime(_linear(weights), interpretable_model=WeightedLinearRegression()).attribute(
        x, n_samples=60, seed=0, return_input_shape=False
    )
    # one indicator per feature: output = bias + sum_i z_i * w_i * x_i, fitted exactly
    torch.testing.assert_close(result.attributions, weights * x)
    # facade, sklearn surrogate, feature groups: coefficient = the group's contribution
    mask = torch.tensor([[0, 0, 1, 1, 2, 2]])
    coefs = Lime(_linear(weights), interpretable_model=SkLearnLinearRegression()).attribute(
        x[:1], feature_mask=mask, n_samples=30, return_input_shape=False
    )
    expected = (weights * x[0]).view(3, 2).sum(dim=1)  # float64 in, float64 out
    torch.testing.assert_close(coefs[0], expected, atol=1e-5, rtol=1e-5)


def _all_coalitions(m):
    def iter_combinations(*args, **kwargs):
        for i in range(2**m):
            yield torch.tensor([int(d) for d in bin(i)[2:].zfill(m)]).unsqueeze(0)

    return iter_combinations


def test_exhaustive_generator_is_deterministic_and_batch_size_free():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 3)).eval()
    x = torch.randn(1, 8)
    mask = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3]])
    runs = []
    for per_eval in (1, 4, 16):
        lime = Lime(model, perturb_func=_all_coalitions(4))
        runs.append(
            lime.attribute(
                x, target=2, feature_mask=mask, n_samples=16, perturbations_per_eval=per_eval
            )
        )
    for run in runs[1:]:
        assert torch.equal(run, runs[0])
    # a generator that stops early warns, as in Captum
    with pytest.warns(UserWarning, match="stopped after 16 of 20"):
        Lime(model, perturb_func=_all_coalitions(4)).attribute(
            x, target=2, feature_mask=mask, n_samples=20
        )


def test_lasso_drops_irrelevant_groups():
    # groups 0 and 1 drive the output, groups 2 and 3 barely matter
    weights = torch.tensor([3.0, 3.0, -2.0, -2.0, 0.01, 0.01, -0.01, -0.01])
    x = torch.ones(1, 8)
    mask = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3]])
    similarity = get_exp_kernel_similarity_function("euclidean", kernel_width=1000)
    dense = Lime(
        _linear(weights), interpretable_model=SkLearnLinearRegression(), similarity_func=similarity
    ).attribute(x, feature_mask=mask, n_samples=16, return_input_shape=False)
    sparse = Lime(
        _linear(weights),
        interpretable_model=SkLearnLasso(alpha=0.08),
        similarity_func=similarity,
        perturb_func=_all_coalitions(4),
    ).attribute(x, feature_mask=mask, n_samples=16, return_input_shape=False)
    assert torch.all(dense[0, 2:].abs() > 0)
    assert torch.all(sparse[0, 2:] == 0)
    assert torch.all(sparse[0, :2].abs() > 1)


def test_batched_lime_fits_one_surrogate_per_example_and_is_seeded():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    x = torch.randn(3, 6)
    lime = NativeLime(model)
    first = lime.attribute(x, target=[0, 1, 0], n_samples=40, seed=5, chunk_size=7)
    again = lime.attribute(x, target=[0, 1, 0], n_samples=40, seed=5, chunk_size="auto")
    torch.testing.assert_close(first.attributions, again.attributions)
    single = lime.attribute(x[1:2], target=1, n_samples=40, seed=5)
    torch.testing.assert_close(single.attributions[0], first.attributions[1])
    assert first.attributions.shape == x.shape


def test_kernel_shap_facade_shapes():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    x = torch.randn(2, 4)
    attributions = KernelShap(model).attribute(x, target=0, n_samples=16)
    # 16 = 2^4 coalitions: exact Shapley values, which for a linear model are x * w
    torch.testing.assert_close(attributions, x * model[0].weight[0].detach(), atol=1e-5, rtol=1e-4)
    coefs = KernelShap(model).attribute(x, target=0, n_samples=16, return_input_shape=False)
    assert coefs.shape == (2, 4) and coefs.dtype == torch.float32
    torch.testing.assert_close(coefs, attributions)


def test_limebase_requires_its_transform():
    # native: __init__ only stores; the rule spanning two options is checked before the
    # maths runs (the perturb_func is never called)
    def never(x, **kwargs):
        raise AssertionError("perturb_func ran before validation")

    native = NativeLimeBase(
        lambda x: x,
        interpretable_model=WeightedLinearRegression(),
        similarity_func=lambda *a, **k: 1.0,
        perturb_func=never,
    )
    with pytest.raises(ParameterError, match="'from_interp_rep_transform' parameter of LimeBase"):
        native.attribute(torch.ones(1, 3))
    native.perturb_interpretable_space = False
    with pytest.raises(ParameterError, match="'to_interp_rep_transform' parameter of LimeBase"):
        native.attribute(torch.ones(1, 3))
    # the facade reports it at construction, as Captum's constructor does
    with pytest.raises(ParameterError, match="'from_interp_rep_transform' parameter of LimeBase"):
        LimeBase(
            lambda x: x, WeightedLinearRegression(), lambda *a, **k: 1.0, never, True, None, None
        )
    with pytest.raises(TypeError, match="'similarity_func' parameter of LimeBase"):
        NativeLimeBase(
            lambda x: x,
            interpretable_model=WeightedLinearRegression(),
            similarity_func=None,
            perturb_func=never,
            from_interp_rep_transform=lambda s, o, **k: o,
        ).attribute(torch.ones(1, 3))


# ---------------------------------------------------------------------------
# Seed 000, part 1: LIME on an image classifier with segmentation "superpixels"
# ---------------------------------------------------------------------------


class TinyImageNet(nn.Module):
    """A small local stand-in for resnet18 (10 classes)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4)
        )
        self.fc = nn.Linear(8 * 16, 10)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


def test_seed_image_flow():
    torch.manual_seed(4)
    resnet = TinyImageNet().eval()
    img = torch.randn(3, 32, 32)
    # a VOC-like segmentation with ids {0, 15, 20, 255} (background, objects, border)
    seg_mask = torch.zeros(1, 32, 32, dtype=torch.long)
    seg_mask[:, 4:16, 4:20] = 15
    seg_mask[:, 18:30, 10:28] = 20
    seg_mask[:, :2, :] = 255

    outputs = resnet(img.unsqueeze(0))
    output_probs = F.softmax(outputs, dim=1).squeeze(0)

    seg_ids = sorted(seg_mask.unique().tolist())
    feature_mask = seg_mask.clone()
    for i, seg_id in enumerate(seg_ids):
        feature_mask[feature_mask == seg_id] = i
    assert feature_mask.unique().tolist() == [0, 1, 2, 3]
    assert torch.equal(relabel_contiguous(seg_mask)[0], feature_mask)  # the whybox helper

    exp_eucl_distance = get_exp_kernel_similarity_function("euclidean", kernel_width=1000)
    lr_lime = Lime(
        resnet,
        interpretable_model=SkLearnLinearRegression(),
        similarity_func=exp_eucl_distance,
    )
    label_idx = output_probs.argmax().unsqueeze(0)
    attrs = lr_lime.attribute(
        img.unsqueeze(0),
        target=label_idx,
        feature_mask=feature_mask.unsqueeze(0),
        n_samples=40,
        perturbations_per_eval=16,
        show_progress=True,
    ).squeeze(0)
    assert attrs.shape == img.shape
    assert attrs.min().item() <= attrs.max().item()

    from whybox.attr import visualization as viz

    def show_attr(attr_map):
        return viz.visualize_image_attr(
            attr_map.permute(1, 2, 0).numpy(),
            method="heat_map",
            sign="all",
            show_colorbar=True,
            use_pyplot=False,
        )

    show_attr(attrs)

    n_interpret_features = len(seg_ids)

    def iter_combinations(*args, **kwargs):
        for i in range(2**n_interpret_features):
            yield torch.tensor([int(d) for d in bin(i)[2:].zfill(n_interpret_features)]).unsqueeze(
                0
            )

    lasso_lime = Lime(
        resnet,
        interpretable_model=SkLearnLasso(alpha=0.001),
        similarity_func=exp_eucl_distance,
        perturb_func=iter_combinations,
    )
    attrs = lasso_lime.attribute(
        img.unsqueeze(0),
        target=label_idx,
        feature_mask=feature_mask.unsqueeze(0),
        n_samples=2**n_interpret_features,
        perturbations_per_eval=16,
        show_progress=True,
    ).squeeze(0)
    # each segment's pixels share its coefficient
    for segment in range(4):
        values = attrs[:, feature_mask[0] == segment]
        assert torch.all(values == values.reshape(-1)[0])

    alter_label_idx = 7
    attrs = lasso_lime.attribute(
        img.unsqueeze(0),
        target=alter_label_idx,
        feature_mask=feature_mask.unsqueeze(0),
        n_samples=2**n_interpret_features,
        perturbations_per_eval=16,
        show_progress=True,
        return_input_shape=True,
    ).squeeze(0)
    assert attrs.shape == img.shape

    # section 4: the sampling process by hand
    sample_index = 13
    generator = iter_combinations()
    for _ in range(sample_index + 1):
        sample_interp_inp = next(generator)
    assert sample_interp_inp.tolist() == [[1, 1, 0, 1]]
    perturbed_img = lasso_lime.from_interp_rep_transform(
        sample_interp_inp, img.unsqueeze(0), feature_mask=feature_mask.unsqueeze(0), baselines=0
    )
    assert torch.all(perturbed_img[0][:, feature_mask[0] == 2] == 0)
    assert torch.equal(perturbed_img[0][:, feature_mask[0] != 2], img[:, feature_mask[0] != 2])
    perturbed_outputs = resnet(perturbed_img).squeeze(0).detach()
    assert perturbed_outputs[label_idx.item()].dim() == 0
    sample_similarity = exp_eucl_distance(img.unsqueeze(0), perturbed_img, None)
    assert 0 < sample_similarity <= 1


# ---------------------------------------------------------------------------
# Seed 000, part 2: LimeBase on an EmbeddingBag text classifier (tokens removed)
# ---------------------------------------------------------------------------


class EmbeddingBagModel(nn.Module):
    def __init__(self, vocab_size, embed_dim, num_class):
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim)
        self.linear = nn.Linear(embed_dim, num_class)

    def forward(self, inputs, offsets):
        embedded = self.embedding(inputs, offsets)
        return self.linear(embedded)


def _sports_model():
    """Tokens 1 and 2 ("medals", "relay") point to class 1; the rest is noise."""
    torch.manual_seed(5)
    model = EmbeddingBagModel(30, 4, 4).eval()
    with torch.no_grad():
        model.embedding.weight.mul_(0.1)
        model.embedding.weight[1] = torch.tensor([4.0, 0.0, 0.0, 0.0])
        model.embedding.weight[2] = torch.tensor([3.0, 0.0, 0.0, 0.0])
        model.linear.weight.zero_()
        model.linear.weight[1, 0] = 1.0
        model.linear.bias.zero_()
    return model


def test_seed_text_flow():
    eb_model = _sports_model()
    test_text = torch.tensor([5, 1, 7, 9, 2, 11, 13, 6, 8, 10, 12, 14, 15, 16, 17, 18])
    test_offsets = torch.tensor([0])
    test_labels = torch.tensor([1])

    def forward_func(text, offsets):
        return eb_model(text.squeeze(0), offsets)

    def exp_embedding_cosine_distance(original_inp, perturbed_inp, _, **kwargs):
        original_emb = eb_model.embedding(original_inp, None)
        perturbed_emb = eb_model.embedding(perturbed_inp, None)
        distance = 1 - F.cosine_similarity(original_emb, perturbed_emb, dim=1)
        return torch.exp(-1 * (distance**2) / 2)

    def bernoulli_perturb(text, **kwargs):
        probs = torch.ones_like(text) * 0.5
        return torch.bernoulli(probs).long()

    def interp_to_input(interp_sample, original_input, **kwargs):
        return original_input[interp_sample.bool()].view(original_input.size(0), -1)

    lasso_lime_base = LimeBase(
        forward_func,
        interpretable_model=SkLearnLasso(alpha=0.08),
        similarity_func=exp_embedding_cosine_distance,
        perturb_func=bernoulli_perturb,
        perturb_interpretable_space=True,
        from_interp_rep_transform=interp_to_input,
        to_interp_rep_transform=None,
    )
    torch.manual_seed(6)
    attrs = lasso_lime_base.attribute(
        test_text.unsqueeze(0),  # add batch dimension for Captum
        target=test_labels,
        additional_forward_args=(test_offsets,),
        n_samples=800,
        show_progress=True,
    ).squeeze(0)
    assert attrs.shape == test_text.shape
    top = attrs.argsort(descending=True)[:2].tolist()
    assert sorted(test_text[top].tolist()) == [1, 2]

    # the whybox helper does what interp_to_input does
    sample = torch.tensor([[1, 0, 1, 1, 0, 0, 1, 0]])
    original = test_text[:8].unsqueeze(0)
    assert torch.equal(token_removal_transform(sample, original), interp_to_input(sample, original))
    padded = baseline_token_transform(0)(sample, original)
    assert padded.tolist() == [[5, 0, 7, 9, 0, 0, 13, 0]]
