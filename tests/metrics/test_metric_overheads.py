"""Speed-motivated rewrites of metrics keep their numbers."""

import copy

import torch
from torch import nn

import whybox
import whybox.metrics as WM
from whybox.metrics._common import average_ranks, pearson, per_example
from whybox.metrics.randomisation import _reinitialise


def test_randomisation_batched_ranks_match_per_step() -> None:
    # the maps of every step are ranked in one call: the numbers must be a per-step loop's
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 5)
    )
    x = torch.rand(3, 3, 16, 16)
    target = [0, 2, 4]
    result = WM.model_parameter_randomisation(model, x, target=target, absolute=False)
    base = whybox.explain(model, x, method="saliency", target=target).attributions
    base_ranks = average_ranks(per_example((base,)))
    copy_ = copy.deepcopy(model)
    for step, name in enumerate(result.layers):
        _reinitialise(copy_.get_submodule(name), step)
        maps = whybox.explain(copy_, x, method="saliency", target=target).attributions
        expected = pearson(base_ranks, average_ranks(per_example((maps,))))
        assert torch.equal(result.similarity[step], expected)
