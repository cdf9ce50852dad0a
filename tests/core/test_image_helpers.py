"""Public image helpers feed Lime directly."""

import torch

from whybox.attr import Lime
from whybox.image import grid_superpixels, relabel_contiguous, superpixels


def test_segments_become_a_lime_feature_mask():
    segments = torch.tensor(
        [[0, 0, 15, 15], [0, 0, 15, 15], [255, 255, 15, 15], [255, 255, 15, 15]]
    )
    mask, mapping = relabel_contiguous(segments)
    assert sorted(mask.unique().tolist()) == [0, 1, 2]
    assert mapping.tolist() == [0, 15, 255]

    def model(x):
        return x.flatten(1).sum(1, keepdim=True)

    image = torch.ones(1, 1, 4, 4)
    attributions = Lime(model).attribute(
        image, target=0, feature_mask=mask.view(1, 1, 4, 4), n_samples=64
    )
    assert attributions.shape == image.shape
    # every pixel of a segment gets its segment's value
    assert torch.allclose(attributions[0, 0, :2, :2], attributions[0, 0, 0, 0].expand(2, 2))


def test_grid_and_slic_superpixels():
    grid = grid_superpixels((8, 8), 4)
    assert grid.shape[-2:] == (8, 8) and grid.unique().numel() == 4
    image = torch.zeros(3, 16, 16)
    image[:, :, 8:] = 1.0
    slic = superpixels(image, method="slic", n_segments=4, compactness=1)
    assert slic.shape[-2:] == (16, 16)
    # the two halves never share a segment
    assert set(slic[..., :8].unique().tolist()).isdisjoint(slic[..., 8:].unique().tolist())
