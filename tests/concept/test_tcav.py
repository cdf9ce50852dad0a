"""TCAV: Captum's numbers under the same seeds, the closed form of a planted concept, the
CAV cache, and the tutorial's statistics."""

from __future__ import annotations

import os
import random
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from whybox.concept import (
    CAV,
    TCAV,
    Classifier,
    Concept,
    CustomIterableDataset,
    DefaultClassifier,
    dataset_to_dataloader,
    random_experimental_sets,
    significance,
)

D = 32


class QuadraticHead(nn.Module):
    """Class-0 score ``f(h) = c.h + s/2 ||h - (c.h) c||^2`` (class 1: ``-f``): the gradient
    is ``c + s P h`` (``P`` projects off ``c``), so its component along ``c`` is always
    positive while the rest varies with the input, symmetric about zero."""

    def __init__(self, direction: torch.Tensor, s: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("c", direction)
        self.s = s

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        along = h @ self.c
        off = h - along[:, None] * self.c
        f = along + 0.5 * self.s * (off**2).sum(1)
        return torch.stack([f, -f], 1)


class PlantedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(D, D)
        with torch.no_grad():
            self.layer.weight.copy_(torch.eye(D))
            self.layer.bias.zero_()
        direction = torch.zeros(D)
        direction[0] = 1.0
        self.head = QuadraticHead(direction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer(x))


def _concepts(seed: int = 0, n: int = 60, randoms: int = 8):
    g = torch.Generator().manual_seed(seed)
    direction = torch.zeros(D)
    direction[0] = 1.0
    planted = torch.randn(n, D, generator=g) * 0.3 + 4.0 * direction
    concept = Concept(0, "planted", DataLoader(planted, batch_size=32))
    rand = [
        Concept(i + 1, f"random_{i}", DataLoader(torch.randn(n, D, generator=g), batch_size=32))
        for i in range(randoms)
    ]
    return concept, rand, torch.randn(64, D, generator=g)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def test_planted_concept_scores_one_random_concepts_about_half(tmp_path):
    torch.manual_seed(0)
    model = PlantedNet().eval()
    concept, rand, inputs = _concepts()
    with_planted = random_experimental_sets(concept, rand[1:])
    random_only = random_experimental_sets(rand[0], rand[1:])
    tcav = _quiet(TCAV, model, ["layer"], save_path=str(tmp_path) + "/")
    random.seed(0)
    np.random.seed(0)
    scores = _quiet(tcav.interpret, inputs, with_planted + random_only, target=0)
    planted = [float(scores[f"0-{r.id}"]["layer"]["sign_count"][0]) for r in rand[1:]]
    others = [float(scores[f"1-{r.id}"]["layer"]["sign_count"][0]) for r in rand[1:]]
    assert min(planted) >= 0.95
    assert 0.4 <= float(np.mean(others)) <= 0.6
    result = significance(scores, with_planted, "layer")
    assert result.pvalue < 1e-3 and result.relation == "Disjoint"
    # two concepts: the scores of a set are complementary
    for key in scores:
        total = scores[key]["layer"]["sign_count"].sum()
        assert torch.isclose(total, torch.tensor(1.0))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc1 = nn.Linear(4 * 6 * 6, 12)
        self.fc2 = nn.Linear(12, 3)

    def forward(self, x):
        h = self.relu(self.conv(x)).flatten(1)
        return self.fc2(torch.tanh(self.fc1(h)))


def _image_concepts():
    g = torch.Generator().manual_seed(1)
    data = [torch.randn(24, 3, 6, 6, generator=g) + k * 0.4 for k in range(4)]
    return [Concept(k, f"c{k}", DataLoader(x, batch_size=10)) for k, x in enumerate(data)]


def _run(lib: str, tmp: str, method: str = "default"):
    if lib == "captum":
        from captum.attr import LayerIntegratedGradients
        from captum.concept import TCAV as T
        from captum.concept import Concept as C
    else:
        from whybox.attr import LayerIntegratedGradients
        from whybox.concept import TCAV as T
        from whybox.concept import Concept as C
    torch.manual_seed(0)
    model = Net().eval()
    concepts = [C(c.id, c.name, c.data_iter) for c in _image_concepts()]
    sets = [
        [concepts[0], concepts[1]],
        [concepts[0], concepts[2], concepts[3]],
        [concepts[2], concepts[3]],
    ]
    kwargs = {}
    if method == "lig":
        kwargs["layer_attr_method"] = LayerIntegratedGradients(
            model, None, multiply_by_inputs=False
        )
    tcav = _quiet(T, model, ["conv", "fc1"], save_path=tmp, **kwargs)
    inputs = torch.randn(10, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    extra = {"n_steps": 5} if method == "lig" else {}
    scores = _quiet(tcav.interpret, inputs, sets, target=1, **extra)
    cavs = {
        key: {layer: tcav.cavs[key][layer].stats["weights"] for layer in per}
        for key, per in tcav.cavs.items()
    }
    return scores, cavs, (random.random(), float(np.random.rand()))


@pytest.mark.parametrize("method", ["default", "lig"])
def test_same_scores_and_cavs_as_captum_under_the_same_seeds(tmp_path, method):
    pytest.importorskip("captum.concept")
    # Captum imports scikit-learn lazily inside its first CAV fit, and importing
    # sklearn.linear_model (through rich) draws once from Python's global `random`: import
    # it before seeding, as in any process that already uses scikit-learn
    pytest.importorskip("sklearn.linear_model")
    ours, our_cavs, our_rng = _run("whybox", str(tmp_path / "w") + "/", method)
    theirs, their_cavs, their_rng = _run("captum", str(tmp_path / "c") + "/", method)
    assert list(ours) == list(theirs)
    for key in theirs:
        assert list(ours[key]) == list(theirs[key]) == ["conv", "fc1"]
        for layer in theirs[key]:
            for score in ("sign_count", "magnitude"):
                torch.testing.assert_close(
                    ours[key][layer][score], theirs[key][layer][score], rtol=1e-4, atol=1e-4
                )
            torch.testing.assert_close(
                our_cavs[key][layer], their_cavs[key][layer], rtol=1e-3, atol=1e-4
            )
    # the seeded generators end where Captum's end (python's split, numpy's SGD seeds)
    assert our_rng == their_rng


class CountingClassifier(Classifier):
    """Mean-difference CAVs; counts its trainings."""

    def __init__(self) -> None:
        self.trained = 0

    def train_and_eval(self, dataloader, **kwargs):
        self.trained += 1
        xs, ys = zip(*dataloader)
        x, y = torch.cat(xs), torch.cat(ys)
        self._classes = sorted(set(y.tolist()))
        self._w = torch.stack([x[y == c].mean(0) - x[y != c].mean(0) for c in self._classes])
        return {"accs": torch.tensor(1.0)}

    def weights(self):
        return self._w

    def classes(self):
        return self._classes


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Captum's CAV.load uses numpy.core
def test_cavs_are_cached_on_disk_at_captums_path(tmp_path):
    torch.manual_seed(0)
    model = Net().eval()
    concepts = _image_concepts()
    save = str(tmp_path) + "/"
    first = CountingClassifier()
    tcav = TCAV(model, ["fc1"], model_id="m", classifier=first, save_path=save)
    inputs = torch.randn(4, 3, 6, 6)
    scores = tcav.interpret(inputs, [concepts[:2]], target=0)
    assert first.trained == 1
    assert os.path.exists(os.path.join(save, "m", "0-1-fc1.pkl"))
    # activations in Captum's layout
    assert os.path.exists(os.path.join(save, "av", "m", "c0-0", "fc1", "0.pt"))
    again = CountingClassifier()
    cached = TCAV(model, ["fc1"], model_id="m", classifier=again, save_path=save)
    assert cached.interpret(inputs, [concepts[:2]], target=0)["0-1"]["fc1"][
        "sign_count"
    ].tolist() == (scores["0-1"]["fc1"]["sign_count"].tolist())
    assert again.trained == 0
    cached.compute_cavs([concepts[:2]], force_train=True)
    assert again.trained == 1
    loaded = CAV.load(save, "m", concepts[:2], "fc1")
    assert [c.id for c in loaded.concepts] == [0, 1] and loaded.layer == "fc1"
    captum_cav = pytest.importorskip("captum.concept").CAV
    theirs = captum_cav.load(save, "m", concepts[:2], "fc1")
    torch.testing.assert_close(theirs.stats["weights"], loaded.stats["weights"])


def test_sensitivities_of_all_layers_come_from_one_backward(tmp_path):
    torch.manual_seed(0)
    model = Net().eval()
    concepts = _image_concepts()
    calls = []
    handle = model.fc2.register_forward_hook(lambda *a: calls.append(1))
    tcav = TCAV(
        model, ["conv", "fc1"], classifier=CountingClassifier(), save_path=str(tmp_path) + "/"
    )
    tcav.compute_cavs([concepts[:2]])
    calls.clear()
    tcav.interpret(torch.randn(5, 3, 6, 6), [concepts[:2]], target=0)
    handle.remove()
    assert len(calls) == 1


def test_errors_name_the_parameter(tmp_path):
    model = Net().eval()
    save = str(tmp_path) + "/"
    with pytest.raises(ValueError, match="'layers' parameter of TCAV"):
        TCAV(model, ["nope"], classifier=CountingClassifier(), save_path=save)
    with pytest.raises(AssertionError, match="'model_id' parameter of TCAV"):
        TCAV(model, ["fc1"], model_id="", classifier=CountingClassifier(), save_path=save)
    tcav = TCAV(model, ["fc1"], classifier=CountingClassifier(), save_path=save)
    concepts = _image_concepts()
    with pytest.raises(AssertionError, match="attribute_to_layer_input"):
        tcav.interpret(torch.randn(2, 3, 6, 6), [concepts[:2]], attribute_to_layer_input=True)
    twin = Concept(0, "again", concepts[1].data_iter)
    with pytest.raises(AssertionError, match="'experimental_sets' parameter"):
        tcav.compute_cavs([[concepts[0], concepts[1]], [twin, concepts[2]]])


def test_concepts_from_a_folder_of_files(tmp_path):
    folder = tmp_path / "striped"
    folder.mkdir()
    for i in range(5):
        torch.save(torch.full((3, 6, 6), float(i)), folder / f"{i}.pt")
    dataset = CustomIterableDataset(torch.load, str(folder) + "/")
    batches = list(dataset_to_dataloader(dataset, batch_size=2))
    assert [b.shape[0] for b in batches] == [2, 2, 1]
    assert sorted(torch.cat(batches)[:, 0, 0, 0].tolist()) == [0.0, 1.0, 2.0, 3.0, 4.0]
    single = tmp_path / "all.pt"
    torch.save(torch.arange(6.0).reshape(3, 2), single)
    rows = list(CustomIterableDataset(torch.load, str(single)))
    assert len(rows) == 3


def test_default_classifier_reports_its_held_out_accuracy():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(30, 5, generator=g) + 3, torch.randn(30, 5, generator=g) - 3])
    y = torch.cat([torch.full((30,), 4), torch.full((30,), 7)])
    clf = _quiet(DefaultClassifier, seed=0)
    stats = clf.train_and_eval([(x[:25], y[:25]), (x[25:], y[25:])])
    assert float(stats["accs"]) == 1.0
    assert clf.classes() == [4, 7]
    w = clf.weights()
    assert w.shape == (2, 5) and torch.equal(w[0], -w[1])
    assert float((x[:30] - x[30:]).mean(0) @ w[0]) > 0  # row 0 points to concept 4
