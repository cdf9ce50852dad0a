"""``whybox._utils.av.AV`` (Captum's activation-vector store): round trips, Captum's layout
(files written by either library are read by the other), the computed activations, and
``_get_module_from_name``."""

from __future__ import annotations

import glob

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from whybox._utils.av import AV
from whybox.concept._core.av import AV as CoreAV
from whybox.concept._utils.common import _get_module_from_name


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Sequential(nn.Linear(5, 3))).eval()


def test_the_concept_path_is_the_same_class():
    assert CoreAV is AV


def test_save_exists_load_round_trip(tmp_path):
    path = str(tmp_path)
    a, b = torch.randn(6, 4), torch.randn(6, 2)
    assert not AV.exists(path, "m", "idf", "layer.0")
    AV.save(path, "m", "idf", ["layer.0", "layer.1"], [a, b], "0")
    AV.save(path, "m", "idf", "layer.0", a + 1, "10")
    AV.save(path, "m", "idf", "layer.0", a + 2, "2")
    assert AV.exists(path, "m", "idf", "layer.0")
    assert AV.exists(path, "m", "idf", "layer.0", "10")
    assert not AV.exists(path, "m", "other", "layer.0")
    assert not AV.exists(path, "m", "idf", "layer.0", "3")
    loaded = AV.load(path, "m", "idf", "layer.0")
    assert len(loaded) == 3
    # natural order of the batch numbers: 0, 2, 10
    for item, expected in zip(loaded, (a, a + 2, a + 1)):
        assert torch.equal(item, expected)
    assert len(AV.load(path, "m", "idf")) == 4
    assert torch.equal(AV.load(path, "m", "idf", "layer.1", "0")[0], b)
    with pytest.raises(RuntimeError, match="not found"):
        AV.load(path, "missing", "idf")
    with pytest.raises(ValueError, match="must match"):
        AV.save(path, "m", "idf", ["x", "y"], [a], "0")


def test_sort_files_is_natural():
    files = ["a/10.pt", "a/2.pt", "a/1.pt", "b/x3.pt", "b/x20.pt"]
    assert AV.sort_files(files) == ["a/1.pt", "a/2.pt", "a/10.pt", "b/x3.pt", "b/x20.pt"]


def test_the_layout_is_captums_both_ways(tmp_path):
    captum_av = pytest.importorskip("captum._utils.av").AV
    path = str(tmp_path)
    a = torch.randn(3, 7)
    AV.save(path, "m", "ours", "fc", a, "0")
    captum_av.save(path, "m", "theirs", "fc", a * 2, "0")
    assert captum_av.exists(path, "m", "ours", "fc")
    assert AV.exists(path, "m", "theirs", "fc")
    assert torch.equal(captum_av.load(path, "m", "ours", "fc")[0], a)
    assert torch.equal(AV.load(path, "m", "theirs", "fc")[0], a * 2)
    for args in [(path, "m"), (path, "m", "i", "l", "3")]:
        assert AV._construct_file_search(*args) == captum_av._construct_file_search(*args)
    assert AV._assemble_model_dir(path, "m") == captum_av._assemble_model_dir(path, "m")


def test_generated_activations_are_the_layer_outputs_and_captums(tmp_path):
    captum_av = pytest.importorskip("captum._utils.av").AV
    model = _model()
    x = torch.randn(10, 4)
    loader = DataLoader(TensorDataset(x, torch.zeros(10)), batch_size=4)
    layers = ["0", "2.0"]
    ours = AV.generate_dataset_activations(
        str(tmp_path / "w"), model, "m", layers, loader, "src", return_activations=True
    )
    theirs = captum_av.generate_dataset_activations(
        str(tmp_path / "c"), model, "m", layers, loader, "src", return_activations=True
    )
    assert isinstance(ours, list) and len(ours) == 2
    for our_layer, their_layer in zip(ours, theirs):
        assert len(our_layer) == len(their_layer) == 3
        for i in range(len(their_layer)):
            torch.testing.assert_close(our_layer[i], their_layer[i])
    with torch.no_grad():
        torch.testing.assert_close(torch.cat(list(ours[1])), model(x))
        torch.testing.assert_close(torch.cat(list(ours[0])), model[0](x))
    # a single layer name gives one dataset; nothing is returned unless asked
    one = AV.generate_dataset_activations(
        str(tmp_path / "w"), model, "m", "0", loader, "src", return_activations=True
    )
    assert isinstance(one, AV.AVDataset) and len(one) == 3
    assert AV.generate_dataset_activations(str(tmp_path / "w"), model, "m", "0", loader) is None


def test_stored_layers_are_skipped_unless_reloading_is_refused(tmp_path):
    path = str(tmp_path)
    model = _model()
    x = torch.randn(2, 4)
    AV._compute_and_save_activations(path, model, "m", ["0"], x, "t", "0")
    marker = torch.full((2, 5), 7.0)
    AV.save(path, "m", "t", "0", marker, "0")
    AV._compute_and_save_activations(path, model, "m", ["0", "1"], x, "t", "0")
    assert torch.equal(AV.load(path, "m", "t", "0", "0")[0], marker)  # kept
    assert len(glob.glob(AV._construct_file_search(path, "m", "t"))) == 2
    with pytest.warns(UserWarning, match="Overwriting activations"):
        AV._compute_and_save_activations(path, model, "m", ["0"], x, "t", "0", load_from_disk=False)
    with torch.no_grad():
        torch.testing.assert_close(AV.load(path, "m", "t", "0", "0")[0], model[0](x))


def test_get_module_from_name_follows_dotted_paths():
    model = _model()
    assert _get_module_from_name(model, "2.0") is model[2][0]
    assert _get_module_from_name(model, "1") is model[1]
    with pytest.raises(AttributeError):
        _get_module_from_name(model, "9")
