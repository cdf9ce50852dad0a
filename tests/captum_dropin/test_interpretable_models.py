"""Captum's interpretable-model names: Model, LinearModel, the SGD and scikit-learn
variants and their training functions."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from whybox._utils.models.linear_model.train import (
    l2_loss,
    sgd_train_linear_model,
    sklearn_train_linear_model,
)
from whybox.attr import (
    Lime,
    LinearModel,
    Model,
    SGDLasso,
    SGDLinearModel,
    SGDLinearRegression,
    SGDRidge,
    SkLearnLasso,
    SkLearnLinearModel,
    SkLearnLinearRegression,
    SkLearnRidge,
)
from whybox.core.surrogate import WeightedLasso

WEIGHTS = torch.tensor([[1.5, -2.0, 0.5]])
BIAS = 0.3


def _loader(n=400, batch_size=40, weights=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=gen)
    y = x @ WEIGHTS.T + BIAS
    tensors = (x, y, torch.rand(n, generator=gen) + 0.5) if weights else (x, y)
    return DataLoader(TensorDataset(*tensors), batch_size=batch_size)


# options under which SGD converges on this problem (Captum's defaults stop early)
SGD_OPTIONS = {"initial_lr": 0.1, "max_epoch": 60, "running_loss_window": 10, "patience": 40}


@pytest.mark.parametrize("cls", [SGDLinearRegression, SGDLasso, SGDRidge])
def test_sgd_models_recover_a_linear_relation(cls):
    model = cls()
    options = dict(SGD_OPTIONS, alpha=1e-4) if cls is not SGDLinearRegression else SGD_OPTIONS
    stats = model.fit(_loader(), **options)
    assert set(stats) == {"train_time", "train_loss", "train_iter", "train_epoch"}
    torch.testing.assert_close(model.representation(), WEIGHTS, atol=2e-2, rtol=0)
    torch.testing.assert_close(model.bias(), torch.tensor([BIAS]), atol=2e-2, rtol=0)
    assert model.classes() is None
    assert model(torch.zeros(2, 3)).shape == (2, 1)
    assert isinstance(model, LinearModel) and isinstance(model, Model)
    assert isinstance(model, torch.nn.Module)


@pytest.mark.parametrize("cls", [SkLearnLinearRegression, SkLearnLasso, SkLearnRidge])
def test_sklearn_models_recover_a_linear_relation(cls):
    pytest.importorskip("sklearn")
    model = cls(alpha=1e-4) if cls is not SkLearnLinearRegression else cls()
    stats = model.fit(_loader(weights=False))
    assert "train_time" in stats
    torch.testing.assert_close(model.representation(), WEIGHTS, atol=2e-3, rtol=0)
    torch.testing.assert_close(model.bias(), torch.tensor([BIAS]), atol=2e-3, rtol=0)
    assert model.classes() is None
    assert isinstance(model, LinearModel) and isinstance(model, Model)


def test_sklearn_classifier_classes():
    pytest.importorskip("sklearn")
    from whybox._utils.models.linear_model.model import SkLearnLogisticRegression

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(200, 3, generator=gen)
    labels = (x[:, 0] > 0).long()
    model = SkLearnLogisticRegression()
    model.fit(DataLoader(TensorDataset(x, labels), batch_size=50))
    assert model.classes().tolist() == [0, 1] and model.representation().shape == (1, 3)


def test_linear_model_with_the_sklearn_train_function():
    pytest.importorskip("sklearn")
    model = LinearModel(train_fn=sklearn_train_linear_model, alpha=1e-4)
    model.fit(_loader(), sklearn_trainer="linear_model.Lasso", norm_input=False)
    torch.testing.assert_close(model.representation(), WEIGHTS, atol=2e-3, rtol=0)
    normed = LinearModel(train_fn=sklearn_train_linear_model)
    normed.fit(_loader(), sklearn_trainer="LinearRegression", norm_input=True)
    x = torch.randn(4, 3)
    torch.testing.assert_close(normed(x), x @ WEIGHTS.T + BIAS, atol=1e-4, rtol=0)


def test_linear_model_construction_rules():
    model = LinearModel(train_fn=sgd_train_linear_model, norm_type="layer_norm")
    with pytest.raises(RuntimeError, match="not fitted"):
        model.representation()
    assert model.bias() is None and model.classes() is None
    model._construct_model_params(weight_values=torch.ones(4), bias_value=torch.zeros(1))
    assert model.linear.weight.shape == (1, 4) and model.norm is None
    with pytest.raises(ValueError, match="norm_type"):
        model._construct_model_params(in_features=2, out_features=1, norm_type="group_norm")
    with pytest.raises(ValueError, match="bias=False"):
        model._construct_model_params(
            weight_values=torch.ones(4), bias=False, bias_value=torch.zeros(1)
        )
    with pytest.raises(ValueError, match="in_features"):
        model._construct_model_params()
    sgd = SGDLinearModel(norm_type="batch_norm", affine_norm=True)
    sgd.fit(_loader(), reg_term=None, max_epoch=2)
    assert isinstance(sgd.norm, torch.nn.BatchNorm1d)


def test_whybox_surrogates_satisfy_captums_interface():
    assert isinstance(WeightedLasso(), Model) and isinstance(
        SkLearnLinearModel("linear_model.Lasso"), LinearModel
    )
    assert l2_loss(torch.ones(2), torch.zeros(2)) == 0.5
    torch.testing.assert_close(
        l2_loss(torch.ones(2, 1), torch.zeros(2, 1), torch.tensor([[1.0], [3.0]])),
        torch.tensor(0.5),
    )


def test_lime_with_an_sgd_surrogate():
    model = torch.nn.Linear(3, 1)
    with torch.no_grad():
        model.weight.copy_(WEIGHTS)
        model.bias.fill_(BIAS)
    torch.manual_seed(0)
    coefs = Lime(model, interpretable_model=SGDLinearRegression()).attribute(
        torch.ones(1, 3), n_samples=60, return_input_shape=False
    )
    assert coefs.shape == (1, 3) and torch.isfinite(coefs).all()


@pytest.mark.parametrize("name", ["SGDLasso", "SGDRidge", "SGDLinearRegression"])
def test_sgd_parity_with_captum(name):
    linear_model = pytest.importorskip("captum._utils.models.linear_model")
    import whybox._utils.models.linear_model as ours_module

    loader = _loader(n=200, batch_size=25, seed=3)
    ours, theirs = getattr(ours_module, name)(), getattr(linear_model, name)()
    options = {"alpha": 0.01, "initial_lr": 0.05, "max_epoch": 5}
    stats_ours, stats_theirs = ours.fit(loader, **options), theirs.fit(loader, **options)
    assert stats_ours["train_iter"] == stats_theirs["train_iter"]
    torch.testing.assert_close(ours.representation(), theirs.representation())
    torch.testing.assert_close(ours.bias(), theirs.bias())
