"""Fixtures: small seeded models in eval mode."""

import pytest
import torch

from _support import ConvNet, EmbeddingNet, MultiInputNet

# One thread per test worker: the suite runs 2 workers on 2 cores, and oversubscribed
# threads make small ops ~100x slower.
torch.set_num_threads(1)


@pytest.fixture
def conv_net():
    torch.manual_seed(0)
    return ConvNet().eval()


@pytest.fixture
def multi_input_net():
    torch.manual_seed(1)
    return MultiInputNet().eval()


@pytest.fixture
def embedding_net():
    torch.manual_seed(2)
    return EmbeddingNet().eval()
