"""Small classifiers used by Captum 0.9's tests (``captum.testing.helpers.classification_models``).

The layers are created in the same order as Captum's, so under the same seed the
randomly initialised weights, and therefore the outputs, are identical. The
``*DeepLiftModel`` variants overwrite their weights with ones.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class SigmoidModel(nn.Module):
    """Linear -> ReLU -> Linear -> Sigmoid.

    Architecture from
    https://medium.com/coinmonks/create-a-neural-network-in-pytorch-and-make-your-life-simpler-ec5367895199

    Parameters
    ----------
    num_in : int
        Number of input features.
    num_hidden : int
        Width of the hidden layer.
    num_out : int
        Number of outputs.
    """

    def __init__(self, num_in: int, num_hidden: int, num_out: int) -> None:
        super().__init__()
        self.num_in = num_in
        self.num_hidden = num_hidden
        self.num_out = num_out
        self.lin1 = nn.Linear(num_in, num_hidden)
        self.lin2 = nn.Linear(num_hidden, num_out)
        self.relu1 = nn.ReLU()
        self.sigmoid = nn.Sigmoid()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        hidden = self.relu1(self.lin1(input))
        return self.sigmoid(self.lin2(hidden))


class SoftmaxModel(nn.Module):
    """Linear -> ReLU -> Linear -> ReLU -> Linear -> Softmax (over dimension 1).

    Architecture from
    https://adventuresinmachinelearning.com/pytorch-tutorial-deep-learning/

    Parameters
    ----------
    num_in : int
        Number of input features.
    num_hidden : int
        Width of both hidden layers.
    num_out : int
        Number of classes.
    inplace : bool, default False
        Whether the two ReLUs work in place.
    """

    def __init__(self, num_in: int, num_hidden: int, num_out: int, inplace: bool = False) -> None:
        super().__init__()
        self.num_in = num_in
        self.num_hidden = num_hidden
        self.num_out = num_out
        self.lin1 = nn.Linear(num_in, num_hidden)
        self.lin2 = nn.Linear(num_hidden, num_hidden)
        self.lin3 = nn.Linear(num_hidden, num_out)
        self.relu1 = nn.ReLU(inplace=inplace)
        self.relu2 = nn.ReLU(inplace=inplace)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        hidden1 = self.relu1(self.lin1(input))
        hidden2 = self.relu2(self.lin2(hidden1))
        return self.softmax(self.lin3(hidden2))


class SigmoidDeepLiftModel(nn.Module):
    """:class:`SigmoidModel` without biases and with every weight set to one.

    Parameters
    ----------
    num_in : int
        Number of input features.
    num_hidden : int
        Width of the hidden layer.
    num_out : int
        Number of outputs.
    """

    def __init__(self, num_in: int, num_hidden: int, num_out: int) -> None:
        super().__init__()
        self.num_in = num_in
        self.num_hidden = num_hidden
        self.num_out = num_out
        self.lin1 = nn.Linear(num_in, num_hidden, bias=False)
        self.lin2 = nn.Linear(num_hidden, num_out, bias=False)
        # fixed weights, so DeepLift's expected attributions can be worked out by hand
        self.lin1.weight = nn.Parameter(torch.ones(num_hidden, num_in))
        self.lin2.weight = nn.Parameter(torch.ones(num_out, num_hidden))
        self.relu1 = nn.ReLU()
        self.sigmoid = nn.Sigmoid()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        hidden = self.relu1(self.lin1(input))
        return self.sigmoid(self.lin2(hidden))


class SoftmaxDeepLiftModel(nn.Module):
    """:class:`SoftmaxModel` with every weight set to one (biases stay random).

    Parameters
    ----------
    num_in : int
        Number of input features.
    num_hidden : int
        Width of both hidden layers.
    num_out : int
        Number of classes.
    """

    def __init__(self, num_in: int, num_hidden: int, num_out: int) -> None:
        super().__init__()
        self.num_in = num_in
        self.num_hidden = num_hidden
        self.num_out = num_out
        # created before the weights are overwritten, so the biases draw the same
        # random numbers as Captum's under the same seed
        self.lin1 = nn.Linear(num_in, num_hidden)
        self.lin2 = nn.Linear(num_hidden, num_hidden)
        self.lin3 = nn.Linear(num_hidden, num_out)
        self.lin1.weight = nn.Parameter(torch.ones(num_hidden, num_in))
        self.lin2.weight = nn.Parameter(torch.ones(num_hidden, num_hidden))
        self.lin3.weight = nn.Parameter(torch.ones(num_out, num_hidden))
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()
        self.softmax = nn.Softmax(dim=1)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        hidden1 = self.relu1(self.lin1(input))
        hidden2 = self.relu2(self.lin2(hidden1))
        return self.softmax(self.lin3(hidden2))
