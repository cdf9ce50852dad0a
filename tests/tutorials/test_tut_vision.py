"""CIFAR_TorchVision_Interpret, Resnet_TorchVision_Interpret / _Ablation,
Segmentation_Interpret, Image_and_Text_Classification_LIME and LRP_TorchVision_Tutorial calls
(attributions and the figures of ``visualization``) with ``captum`` renamed to ``whybox``."""

import numpy as np
import pytest
import torch
from matplotlib.colors import LinearSegmentedColormap
from torch import nn

from tutorials._tut import assert_close, both, figure_summary, lib, seed


class CifarNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.pool1 = nn.Conv2d(3, 6, 5), nn.MaxPool2d(2, 2)
        self.conv2, self.pool2 = nn.Conv2d(6, 16, 5), nn.MaxPool2d(2, 2)
        self.fc1, self.fc3 = nn.Linear(16 * 5 * 5, 32), nn.Linear(32, 10)
        self.relu1, self.relu2, self.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc3(self.relu3(self.fc1(x.view(-1, 16 * 5 * 5))))


@pytest.fixture(scope="module")
def cifar():
    seed(0)
    return CifarNet().eval(), torch.rand(1, 3, 32, 32) * 2 - 1, torch.tensor(3)


def hwc(t):
    return np.transpose(t.squeeze(0).detach().numpy(), (1, 2, 0))


def test_cifar_interpret_and_figures(cifar):
    net, image, label = cifar
    original = np.transpose(image[0].numpy() / 2 + 0.5, (1, 2, 0))

    def run(name):
        A = lib(name, "captum.attr")
        viz = A.visualization
        x = image.clone().requires_grad_()
        sal = A.Saliency(net).attribute(x, target=label.item())
        ig, delta = A.IntegratedGradients(net).attribute(
            x, target=label, baselines=x * 0, return_convergence_delta=True
        )
        seed(2)
        nt = A.NoiseTunnel(A.IntegratedGradients(net)).attribute(
            x, target=label, baselines=x * 0, nt_type="smoothgrad_sq", nt_samples=2, stdevs=0.2
        )
        dl = A.DeepLift(net).attribute(x, target=label, baselines=x * 0)
        figs = [
            viz.visualize_image_attr(hwc(ig), original, method="original_image", title="Original"),
            viz.visualize_image_attr(
                hwc(sal),
                original,
                method="blended_heat_map",
                sign="absolute_value",
                show_colorbar=True,
                title="Gradients",
            ),
            viz.visualize_image_attr(
                hwc(ig),
                original,
                method="blended_heat_map",
                sign="all",
                show_colorbar=True,
                title="IG",
            ),
            viz.visualize_image_attr(
                hwc(nt),
                original,
                method="blended_heat_map",
                sign="absolute_value",
                outlier_perc=10,
                show_colorbar=True,
            ),
            viz.visualize_image_attr(hwc(dl), original, method="heat_map", sign="negative"),
            viz.visualize_image_attr(hwc(ig), original, method="masked_image", sign="positive"),
            viz.visualize_image_attr(
                hwc(ig), original, method="alpha_scaling", sign="absolute_value"
            ),
        ]
        return [t.detach() for t in (sal, ig, delta, nt, dl)], [figure_summary(f) for f in figs]

    assert_close(*both(run))


def test_resnet_interpret_figures(cifar):
    net, image, label = cifar
    img01 = image * 0.5 + 0.5
    cmap = LinearSegmentedColormap.from_list(
        "custom blue", [(0, "#ffffff"), (0.25, "#000000"), (1, "#000000")], N=256
    )

    def run(name):
        A = lib(name, "captum.attr")
        viz = A.visualization
        ig = A.IntegratedGradients(net).attribute(image, target=label, n_steps=20)
        seed(0)
        gs = A.GradientShap(net).attribute(
            image, n_samples=8, stdevs=0.0001, baselines=torch.cat([image * 0, image]), target=label
        )
        occ = A.Occlusion(net).attribute(
            image, strides=(3, 8, 8), target=label, sliding_window_shapes=(3, 15, 15), baselines=0
        )
        figs = [
            viz.visualize_image_attr(
                hwc(ig),
                hwc(img01),
                method="heat_map",
                cmap=cmap,
                show_colorbar=True,
                sign="positive",
                outlier_perc=1,
            ),
            viz.visualize_image_attr_multiple(
                hwc(gs),
                hwc(img01),
                ["original_image", "heat_map"],
                ["all", "absolute_value"],
                cmap=cmap,
                show_colorbar=True,
            ),
            viz.visualize_image_attr_multiple(
                hwc(ig),
                hwc(img01),
                ["original_image", "heat_map", "heat_map", "masked_image"],
                ["all", "positive", "negative", "positive"],
                show_colorbar=True,
                titles=["Original", "Positive", "Negative", "Masked"],
                fig_size=(18, 6),
            ),
            viz.visualize_image_attr_multiple(
                hwc(ig), hwc(img01), ["heat_map"], ["all"], use_pyplot=False
            ),
        ]
        return [t.detach() for t in (ig, gs, occ)], [figure_summary(f) for f in figs]

    assert_close(*both(run))


def test_segmentation_and_ablation(cifar):
    net, image, label = cifar
    seed(0)
    seg = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 7, 1)).eval()
    out_max = torch.argmax(seg(image), dim=1, keepdim=True)
    cls = int(torch.mode(out_max.flatten()).values)  # a class present in the map

    def agg(inp):
        out = seg(inp)
        selected = torch.zeros_like(out[0:1]).scatter_(1, out_max, 1)
        return (out * selected).sum(dim=(2, 3))

    mask = (
        torch.arange(16).reshape(4, 4).repeat_interleave(8, 0).repeat_interleave(8, 1)[None, None]
    )
    img01 = image * 0.5 + 0.5

    def run(name):
        A = lib(name, "captum.attr")
        viz = A.visualization
        gc = A.LayerGradCam(agg, seg[0]).attribute(image, target=cls)
        up = A.LayerAttribution.interpolate(gc, image.shape[2:])
        fa = A.FeatureAblation(agg).attribute(
            image, feature_mask=out_max, perturbations_per_eval=2, target=cls
        )
        abl = A.FeatureAblation(net).attribute(
            image, target=label, feature_mask=mask, baselines=0.5, perturbations_per_eval=3
        )
        figs = [
            viz.visualize_image_attr(hwc(gc), sign="all"),
            viz.visualize_image_attr_multiple(
                hwc(up),
                original_image=hwc(img01),
                signs=["all", "positive", "all"],
                methods=["original_image", "blended_heat_map", "blended_heat_map"],
            ),
            viz.visualize_image_attr(
                hwc(abl), method="heat_map", sign="all", show_colorbar=True, title="abl"
            ),
        ]
        return [t.detach() for t in (gc, up, fa, abl)], [figure_summary(f) for f in figs]

    assert_close(*both(run))


def test_lime_image_and_text(cifar):
    net, image, label = cifar
    mask = (
        torch.arange(16).reshape(4, 4).repeat_interleave(8, 0).repeat_interleave(8, 1)[None, None]
    )
    bag = nn.EmbeddingBag(30, 8)
    head = nn.Linear(8, 3)
    text, offsets = torch.randint(0, 30, (10,)), torch.tensor([0])

    def run(name):
        A = lib(name, "captum.attr")
        LM = lib(name, "captum._utils.models.linear_model")
        L = lib(name, "captum.attr._core.lime")
        lime = A.Lime(
            net,
            interpretable_model=LM.SkLearnLinearRegression(),
            similarity_func=L.get_exp_kernel_similarity_function("euclidean", kernel_width=1000),
        )
        seed(0)
        img_attr = lime.attribute(
            image,
            target=label,
            feature_mask=mask,
            n_samples=30,
            perturbations_per_eval=16,
            show_progress=True,
        )

        def forward(t, off):
            return head(bag(t.squeeze(0), off))

        def similarity(original, perturbed, _, **kwargs):
            d = 1 - torch.nn.functional.cosine_similarity(
                bag(original, None), bag(perturbed, None), dim=1
            )
            return torch.exp(-1 * d**2 / 2)

        base = A.LimeBase(
            forward,
            interpretable_model=LM.SkLearnLasso(alpha=0.08),
            similarity_func=similarity,
            perturb_func=lambda t, **kw: torch.bernoulli(torch.ones_like(t) * 0.5).long(),
            perturb_interpretable_space=True,
            from_interp_rep_transform=lambda s, x, **kw: x[s.bool()].view(x.size(0), -1),
            to_interp_rep_transform=None,
        )
        seed(0)
        txt_attr = base.attribute(
            text.unsqueeze(0), additional_forward_args=(offsets,), target=1, n_samples=100
        )
        return img_attr.detach(), txt_attr.detach()

    assert_close(*both(run))


class VGGish(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _set_rules(model, R):
    layers = list(model.features) + list(model.classifier)
    for i, layer in enumerate(layers):
        layer.rule = (
            R.Alpha1_Beta0_Rule() if i == 0 else R.GammaRule() if i <= 3 else R.EpsilonRule()
        )


def _clear_rules(model):
    for layer in list(model.features) + list(model.classifier):
        if hasattr(layer, "rule"):
            del layer.rule


def test_lrp_first_call():
    seed(0)
    model = VGGish().eval()
    x = torch.rand(1, 3, 16, 16)

    def run(name):
        A, R = lib(name, "captum.attr"), lib(name, "captum.attr._utils.lrp_rules")
        _clear_rules(model)
        _set_rules(model, R)
        a = A.LRP(model).attribute(x, target=2)
        _clear_rules(model)
        ll = A.LayerLRP(model, [model.features[0], model.classifier[0]]).attribute(
            x, target=2, attribute_to_layer_input=True
        )
        fig = A.visualization.visualize_image_attr(
            hwc(a), method="heat_map", sign="all", show_colorbar=True
        )
        return a.detach(), [t.detach() for t in ll], figure_summary(fig)

    assert_close(*both(run))


def test_lrp_rules_the_user_set_stay_for_a_second_call():
    """The LRP tutorial sets ``module.rule`` then attributes. The first call equals
    Captum's; afterwards whybox leaves the user's rules on the model (Captum deletes them,
    README "Differences"), so a second call gives the first call's numbers again."""
    seed(0)
    model = VGGish().eval()
    x = torch.rand(1, 3, 16, 16)

    def first(name):
        A, R = lib(name, "captum.attr"), lib(name, "captum.attr._utils.lrp_rules")
        _clear_rules(model)
        _set_rules(model, R)
        out = A.LRP(model).attribute(x, target=2).detach()
        _clear_rules(model)
        return out

    assert_close(*both(first))
    A, R = lib("whybox", "captum.attr"), lib("whybox", "captum.attr._utils.lrp_rules")
    _clear_rules(model)
    _set_rules(model, R)
    rules = {name: m.rule for name, m in model.named_modules() if hasattr(m, "rule")}
    once = A.LRP(model).attribute(x, target=2).detach()
    assert {name: m.rule for name, m in model.named_modules() if hasattr(m, "rule")} == rules
    twice = A.LRP(model).attribute(x, target=2).detach()
    _clear_rules(model)
    assert rules and torch.equal(once, twice)
