"""Models, datasets and constructors shared by the influence tests (Captum 0.9's
``captum.testing.helpers.influence.common``).

Everything here draws from torch's global RNG in the same order as Captum's module, so a
seeded call gives the same models, checkpoints and tensors under either library; the
influence classes built by :class:`DataInfluenceConstructor` are whybox's.
"""

from __future__ import annotations

import inspect
import os
import re
import unittest
from collections.abc import Callable
from functools import partial
from inspect import isfunction
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Module
from torch.utils.data import DataLoader, Dataset

from whybox.influence import DataInfluence
from whybox.influence._core.arnoldi_influence_function import ArnoldiInfluenceFunction
from whybox.influence._core.influence_function import NaiveInfluenceFunction
from whybox.influence._core.tracincp_fast_rand_proj import TracInCPFast, TracInCPFastRandProj

try:
    # re-exported as in Captum's module; ``parameterized`` is a test-only dependency, so
    # the helpers below do not need it
    from parameterized import parameterized  # noqa: F401
    from parameterized.parameterized import param
except ImportError:  # pragma: no cover - depends on the environment
    parameterized = None
    param = None

# influence classes built from a final fully-connected layer, and from one checkpoint file
_FINAL_LAYER_CLASSES = (TracInCPFast, TracInCPFastRandProj)
_SINGLE_CHECKPOINT_CLASSES = (NaiveInfluenceFunction, ArnoldiInfluenceFunction)


def _isSorted(x: Any, key: Callable[[Any], Any] = lambda x: x, descending: bool = True) -> bool:
    """Whether the items of ``x`` are ordered by ``key`` (ties allowed).

    Parameters
    ----------
    x : sequence
    key : callable, default identity
    descending : bool, default True
        Check for non-increasing order; otherwise non-decreasing.

    Returns
    -------
    bool
    """
    indices = range(len(x) - 1)
    if descending:
        return all(key(x[i]) >= key(x[i + 1]) for i in indices)
    return all(key(x[i]) <= key(x[i + 1]) for i in indices)


def _wrap_model_in_dataparallel(net: Module) -> Module:
    """Move ``net`` to the GPU and wrap it in :class:`torch.nn.DataParallel` over every device.

    Device 0 comes first and the rest in reverse order, so the replicas do not simply follow
    device numbering.
    """
    device_ids = [0, *range(torch.cuda.device_count() - 1, 0, -1)]
    return torch.nn.DataParallel(net.cuda(), device_ids=device_ids)


def _move_sample_list_to_cuda(samples: list[Tensor]) -> list[Tensor]:
    """Copies of ``samples`` on the GPU."""
    return [sample.cuda() for sample in samples]


class ExplicitDataset(Dataset):
    """A dataset of ``(sample, label)`` pairs from two tensors of equal length.

    Parameters
    ----------
    samples : Tensor
        One row per example.
    labels : Tensor
        One row per example.
    use_gpu : bool, default False
        Keep both tensors on the GPU.
    """

    def __init__(self, samples: Tensor, labels: Tensor, use_gpu: bool = False) -> None:
        self.samples, self.labels = samples, labels
        if use_gpu:
            self.samples = self.samples.cuda()
            self.labels = self.labels.cuda()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int) -> tuple[Tensor, Tensor]:
        return (self.samples[idx], self.labels[idx])


class UnpackDataset(Dataset):
    """A dataset whose examples are several input tensors followed by a label.

    Parameters
    ----------
    samples : list of Tensor
        One tensor per model input, each with one row per example.
    labels : Tensor
        One row per example.
    use_gpu : bool, default False
        Keep the tensors on the GPU.
    """

    def __init__(self, samples: list[Tensor], labels: Tensor, use_gpu: bool = False) -> None:
        self.samples, self.labels = samples, labels
        if use_gpu:
            self.samples = _move_sample_list_to_cuda(self.samples)
            self.labels = self.labels.cuda()

    def __len__(self) -> int:
        return len(self.samples[0])

    def __getitem__(self, idx: int) -> list[Tensor]:
        """``[input_0[idx], input_1[idx], ..., labels[idx]]``: the inputs, then the label."""
        return [*(inputs[idx] for inputs in self.samples), self.labels[idx]]


class IdentityDataset(ExplicitDataset):
    """The rows of the ``num_features`` identity matrix, each labelled ``0``.

    Parameters
    ----------
    num_features : int
    use_gpu : bool, default False
    """

    def __init__(self, num_features: int, use_gpu: bool = False) -> None:
        self.samples: Tensor = torch.diag(torch.ones(num_features))
        self.labels: Tensor = torch.zeros(num_features).unsqueeze(1)
        if use_gpu:
            self.samples = self.samples.cuda()
            self.labels = self.labels.cuda()


class RangeDataset(ExplicitDataset):
    """Examples ``low, ..., high - 1``: value ``v`` repeated over the features, labelled ``v``.

    Parameters
    ----------
    low, high : int
        The half-open range of values.
    num_features : int
    use_gpu : bool, default False
    """

    def __init__(self, low: int, high: int, num_features: int, use_gpu: bool = False) -> None:
        values = torch.arange(start=low, end=high, dtype=torch.float)
        self.samples: Tensor = values.repeat(num_features, 1).transpose(1, 0)
        self.labels: Tensor = torch.arange(start=low, end=high, dtype=torch.float).unsqueeze(1)
        if use_gpu:
            self.samples = self.samples.cuda()
            self.labels = self.labels.cuda()


# two-feature points, normalised to unit length: the first twelve labelled 1, the rest -1
_BINARY_POINTS = (
    (1, 1),
    (2, 1),
    (1, 2),
    (1, 5),
    (0.01, 1),
    (5, 1),
    (1, 0.01),
    (-1, -1),
    (-2, -1),
    (-1, -2),
    (-1, -5),
    (-5, -1),
    (1, -1),
    (2, -1),
    (1, -2),
    (1, -5),
    (0.01, -1),
    (5, -1),
    (-1, 1),
    (-2, 1),
    (-1, 2),
    (-1, 5),
    (-5, 1),
    (-1, 0.01),
)


class BinaryDataset(ExplicitDataset):
    """24 unit-length points in the plane with labels ``1`` (first half) and ``-1``.

    Parameters
    ----------
    use_gpu : bool, default False
    """

    def __init__(self, use_gpu: bool = False) -> None:
        self.samples: Tensor = F.normalize(torch.tensor(_BINARY_POINTS, dtype=torch.float))
        self.labels: Tensor = torch.cat(
            (torch.tensor([1.0]).repeat(12, 1), torch.tensor([-1.0]).repeat(12, 1))
        )
        super().__init__(self.samples, self.labels, use_gpu)


class CoefficientNet(nn.Module):
    """One bias-free linear output whose weights all start at ``0.01``.

    Parameters
    ----------
    in_features : int, default 1
    """

    def __init__(self, in_features: int = 1) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, 1, bias=False)
        self.fc1.weight.data.fill_(0.01)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc1(x)


class BasicLinearNet(nn.Module):
    """Two linear layers, each followed by ``tanh``.

    Parameters
    ----------
    in_features, hidden_nodes, out_features : int
    """

    def __init__(self, in_features: int, hidden_nodes: int, out_features: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(in_features, hidden_nodes)
        self.linear2 = nn.Linear(hidden_nodes, out_features)

    def forward(self, input: Tensor) -> Tensor:
        return torch.tanh(self.linear2(torch.tanh(self.linear1(input))))


class MultLinearNet(nn.Module):
    """:class:`BasicLinearNet` for several inputs: they are concatenated along the features and
    reduced back to ``in_features`` by a linear layer ``pre`` first.

    Parameters
    ----------
    in_features, hidden_nodes, out_features : int
    num_inputs : int
        How many ``[batch x in_features]`` inputs ``forward`` takes.
    """

    def __init__(
        self, in_features: int, hidden_nodes: int, out_features: int, num_inputs: int
    ) -> None:
        super().__init__()
        self.pre = nn.Linear(in_features * num_inputs, in_features)
        self.linear1 = nn.Linear(in_features, hidden_nodes)
        self.linear2 = nn.Linear(hidden_nodes, out_features)

    def forward(self, *inputs: Tensor) -> Tensor:
        x = self.pre(torch.cat(inputs, dim=1))
        return torch.tanh(self.linear2(torch.tanh(self.linear1(x))))


class Linear(nn.Module):
    """A bias-free linear regression whose only parameter is ``linear``.

    The counterpart of :class:`UnpackLinear`; its infinitesimal influence has a closed form,
    which makes it the reference model for the influence-function implementations.

    Parameters
    ----------
    in_features : int
    """

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, 1, bias=False)

    def forward(self, input: Tensor) -> Tensor:
        return self.linear(input)


class UnpackLinear(nn.Module):
    """:class:`Linear` over several inputs, concatenated along the features.

    Parameters
    ----------
    in_features : int
        Features of each input.
    num_inputs : int
    """

    def __init__(self, in_features: int, num_inputs: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features * num_inputs, 1, bias=False)

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.linear(torch.cat(inputs, dim=1))


def _make_dataset(
    all_samples: list[Tensor], labels: Tensor, rows: slice, use_gpu: bool, unpack_inputs: bool
) -> Dataset:
    """The examples ``rows`` of the inputs and labels, as one of the two dataset kinds."""
    if unpack_inputs:
        return UnpackDataset([samples[rows] for samples in all_samples], labels[rows], use_gpu)
    return ExplicitDataset(all_samples[0][rows], labels[rows], use_gpu)


def get_random_data(
    in_features: int,
    out_features: int,
    num_examples: int,
    use_gpu: bool,
    unpack_inputs: bool,
) -> tuple[Dataset, Dataset, Dataset]:
    """Random regression data, split into training, Hessian and test datasets.

    Labels are drawn from ``N(1, 2)`` with shape ``[num_examples x out_features]``, then each
    input (two if ``unpack_inputs``, else one) from ``N(0, 1)`` with shape
    ``[num_examples x in_features]``, all in double precision. All splits come from the same
    draws: the first 32 examples train, the first 22 form the Hessian set (enough for the
    Hessian to be well conditioned) and the remaining ones test.

    Parameters
    ----------
    in_features, out_features, num_examples : int
    use_gpu : bool
        Keep the tensors on the GPU.
    unpack_inputs : bool
        Several inputs per example (:class:`UnpackDataset`) instead of one
        (:class:`ExplicitDataset`).

    Returns
    -------
    tuple of Dataset
        ``(train_dataset, hessian_dataset, test_dataset)``.
    """
    num_train, num_hessian = 32, 22
    num_inputs = 2 if unpack_inputs else 1

    # labels first, then the inputs: the order seeded tests rely on
    labels = torch.normal(1, 2, (num_examples, out_features)).double()
    all_samples = [
        torch.normal(0, 1, (num_examples, in_features)).double() for _ in range(num_inputs)
    ]

    def split(rows: slice) -> Dataset:
        return _make_dataset(all_samples, labels, rows, use_gpu, unpack_inputs)

    return (
        split(slice(None, num_train)),
        split(slice(None, num_hessian)),
        split(slice(num_train, None)),
    )


def _adjust_model(model: Module, gpu_setting: str | None) -> Module:
    """``model`` placed as ``gpu_setting`` asks.

    Parameters
    ----------
    model : nn.Module
    gpu_setting : str or None
        ``"cuda"`` moves the model to the GPU; ``"cuda_data_parallel"`` also wraps it in
        :class:`torch.nn.DataParallel` (so a GPU model with and without the wrapper can both
        be tested); anything else leaves it as it is, on the CPU.

    Returns
    -------
    nn.Module
    """
    if gpu_setting == "cuda_data_parallel":
        return _wrap_model_in_dataparallel(model)
    if gpu_setting == "cuda":
        return model.cuda()
    return model


def is_gpu(gpu_setting: str | None) -> bool:
    """Whether ``gpu_setting`` (``"cuda"`` or ``"cuda_data_parallel"``) puts the model on the GPU."""
    return gpu_setting in ("cuda", "cuda_data_parallel")


def _save_checkpoint(model: Module, tmpdir: str, name: str) -> None:
    torch.save(model.state_dict(), os.path.join(tmpdir, name))


def get_random_model_and_data(
    tmpdir: str,
    unpack_inputs: bool,
    return_test_data: bool = True,
    gpu_setting: str | None = None,
    return_hessian_data: bool = False,
    model_type: str = "random",
) -> tuple[Any, ...]:
    """A model with checkpoints saved in ``tmpdir``, its training dataset and, optionally,
    the Hessian and test data.

    The data come from :func:`get_random_data` (5 features, 50 examples; 3 outputs, or 1
    for ``"trained_linear"``). ``model_type`` picks the model and its checkpoints:

    - ``"random"``: :class:`BasicLinearNet` (or :class:`MultLinearNet` if
      ``unpack_inputs``) with five checkpoints ``checkpoint-reg-<i>.pt`` of random weights;
    - ``"trained_linear"``: :class:`Linear` (or :class:`UnpackLinear`) set to the least
      squares fit of the Hessian data, saved as ``checkpoint-final.pt``; trained to
      optimality on the data the Hessian is computed from, so the Hessian is positive
      definite and no eigenvectors are dropped, which lets the influence-function
      implementations be compared with one another;
    - ``"trained_NN"``: the network of ``"random"`` trained with 200 Adam steps on the
      Hessian data (summed squared error), saved as ``checkpoint-final.pt``; trained for
      the same reason, though not necessarily to optimality.

    Parameters
    ----------
    tmpdir : str
        Directory the checkpoints are written to.
    unpack_inputs : bool
        Two inputs per example instead of one.
    return_test_data : bool, default True
    gpu_setting : str or None, default None
        See :func:`_adjust_model`.
    return_hessian_data : bool, default False
    model_type : {"random", "trained_linear", "trained_NN"}, default "random"

    Returns
    -------
    tuple
        ``(net, train_dataset)``, followed by ``(hessian_samples, hessian_labels)`` if
        ``return_hessian_data`` and by ``(test_samples, test_labels)`` if
        ``return_test_data``. ``net`` is placed per ``gpu_setting``; samples are a list of
        tensors if ``unpack_inputs``.
    """
    in_features, hidden_nodes, num_inputs = 5, 4, 2
    use_gpu = is_gpu(gpu_setting)
    # a linear regression is kept to a single output for simplicity
    out_features = 1 if model_type == "trained_linear" else 3
    num_samples = 50

    train_dataset, hessian_dataset, test_dataset = get_random_data(
        in_features, out_features, num_samples, use_gpu, unpack_inputs
    )

    def make_network() -> Module:
        if unpack_inputs:
            return MultLinearNet(in_features, hidden_nodes, out_features, num_inputs).double()
        return BasicLinearNet(in_features, hidden_nodes, out_features).double()

    net: Module
    if model_type == "random":
        net = make_network()
        for i in range(5):
            # draw order per checkpoint: linear1, linear2, then pre
            net.linear1.weight.data = torch.normal(3, 4, (hidden_nodes, in_features)).double()
            net.linear2.weight.data = torch.normal(5, 6, (out_features, hidden_nodes)).double()
            if unpack_inputs:
                net.pre.weight.data = torch.normal(
                    3, 4, (in_features, in_features * num_inputs)
                ).double()
            net_adjusted = _adjust_model(net, gpu_setting)
            _save_checkpoint(net_adjusted, tmpdir, f"checkpoint-reg-{i + 1}.pt")

    elif model_type == "trained_linear":
        net = UnpackLinear(in_features, num_inputs) if unpack_inputs else Linear(in_features)
        net = net.double()
        # whatever the inputs, the model is a linear regression: fit it by least squares
        hessian_samples = (
            torch.cat(hessian_dataset.samples, dim=1) if unpack_inputs else hessian_dataset.samples
        )
        theta = torch.linalg.lstsq(hessian_dataset.labels, hessian_samples).solution
        # the leading rows (one per feature) hold the solution
        theta = theta[: hessian_samples.shape[1]]
        net.linear.weight.data = theta.contiguous()
        net_adjusted = _adjust_model(net, gpu_setting)
        _save_checkpoint(net_adjusted, tmpdir, "checkpoint-final.pt")

    elif model_type == "trained_NN":
        net = make_network()
        net_adjusted = _adjust_model(net, gpu_setting)
        # the whole Hessian set as one batch; iterating the loader draws a seed from the
        # global RNG, which later draws depend on
        batch = next(iter(DataLoader(hessian_dataset, batch_size=len(hessian_dataset))))
        optimizer = torch.optim.Adam(net.parameters())
        criterion = nn.MSELoss(reduction="sum")
        for _ in range(200):
            optimizer.zero_grad()
            loss = criterion(net_adjusted(*batch[:-1]), batch[-1])
            loss.backward()
            optimizer.step()
        _save_checkpoint(net_adjusted, tmpdir, "checkpoint-final.pt")

    # an unknown ``model_type`` leaves ``net_adjusted`` unbound, as in Captum
    training_data = (net_adjusted, train_dataset)
    hessian_data = (hessian_dataset.samples, hessian_dataset.labels)
    test_data = (test_dataset.samples, test_dataset.labels)

    result = training_data
    if return_hessian_data:
        result = (*result, *hessian_data)
    if return_test_data:
        result = (*result, *test_data)
    return result


def _as_values(eigenvalues: Tensor | list[float]) -> Tensor:
    """The eigenvalues as a detached tensor: what ``torch.tensor(eigenvalues)`` gives, without
    its copy-construct warning for tensor input."""
    return torch.as_tensor(eigenvalues).detach()


def generate_symmetric_matrix_given_eigenvalues(eigenvalues: Tensor | list[float]) -> Tensor:
    """A random symmetric matrix with the given eigenvalues.

    ``Q diag(eigenvalues) Q^T`` for the orthonormal ``Q`` of the QR factorisation of a
    standard normal matrix (after google-research/jax-influence's ``test_utils``); used to
    check that the Arnoldi iteration finds the top eigenvalues and eigenvectors.

    Parameters
    ----------
    eigenvalues : Tensor or list of float

    Returns
    -------
    Tensor
        ``[D x D]`` for ``D = len(eigenvalues)``.
    """
    dim = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn((dim, dim)))
    return q @ (torch.diag(_as_values(eigenvalues)) @ q.T)


def generate_assymetric_matrix_given_eigenvalues(eigenvalues: Tensor | list[float]) -> Tensor:
    """A random non-symmetric matrix with the given eigenvalues.

    With random eigenvectors ``Q`` (``Q^T`` standard normal), ``M`` solves ``M Q = Q L``,
    i.e. ``M^T = (Q^T)^{-1} L Q^T`` (after google-research/jax-influence's ``test_utils``);
    used to check the Arnoldi iteration on a non-symmetric operator.

    Parameters
    ----------
    eigenvalues : Tensor or list of float

    Returns
    -------
    Tensor
        ``[D x D]`` for ``D = len(eigenvalues)``.
    """
    dim = len(eigenvalues)
    q_t = torch.randn((dim, dim))
    return torch.linalg.solve(q_t, torch.diag(_as_values(eigenvalues)) @ q_t).T


class DataInfluenceConstructor:
    """Builds an influence instance of one class with fixed keyword arguments, and names
    itself for parameterized test names.

    Parameters
    ----------
    data_influence_class : type
        A :class:`~whybox.influence.DataInfluence` subclass.
    name : str, optional
        Defaults to the class's ``__name__``.
    duplicate_loss_fn : bool, default False
        Also pass the ``loss_fn`` given at call time as ``test_loss_fn``, which should not
        change the instance's behaviour (``test_loss_fn`` defaults to ``loss_fn``).
    **kwargs
        Passed to the class's constructor; call-time keywords override them.
    """

    name: str = ""
    data_influence_class: type

    def __init__(
        self,
        data_influence_class: type,
        name: str | None = None,
        duplicate_loss_fn: bool = False,
        **kwargs: Any,
    ) -> None:
        self.data_influence_class = data_influence_class
        self.name = name if name else data_influence_class.__name__
        self.duplicate_loss_fn = duplicate_loss_fn
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return self.name

    # a method, not a string attribute, as in Captum
    def __name__(self) -> str:
        return self.name

    def __call__(
        self,
        net: Module,
        dataset: Dataset | DataLoader,
        tmpdir: str,
        batch_size: int | None,
        loss_fn: Module | Callable | None,
        **kwargs: Any,
    ) -> DataInfluence:
        """The influence instance for ``net`` trained on ``dataset``, with checkpoints in
        ``tmpdir``.

        TracIn's fast variants also get ``net``'s last child as the final fully-connected
        layer; the influence functions, which take a single checkpoint, get the last file
        of ``tmpdir`` in sorted order.

        Raises
        ------
        unittest.SkipTest
            For ``TracInCPFastRandProj`` when ``annoy`` is not installed.
        """
        constructor_kwargs = {**self.kwargs, **kwargs}
        if self.duplicate_loss_fn:
            constructor_kwargs["test_loss_fn"] = loss_fn
        cls = self.data_influence_class
        if cls is TracInCPFastRandProj:
            self.check_annoy()
        if cls in _FINAL_LAYER_CLASSES:
            final_fc_layer = list(net.children())[-1]
            return cls(
                net,
                final_fc_layer,
                dataset,
                tmpdir,
                loss_fn=loss_fn,
                batch_size=batch_size,
                **constructor_kwargs,
            )
        if cls in _SINGLE_CHECKPOINT_CLASSES:
            checkpoint = os.path.join(tmpdir, sorted(os.listdir(tmpdir))[-1])
            return cls(
                net,
                dataset,
                checkpoint,
                loss_fn=loss_fn,
                batch_size=batch_size,
                **constructor_kwargs,
            )
        return cls(
            net,
            dataset,
            tmpdir,
            batch_size=batch_size,
            loss_fn=loss_fn,
            **constructor_kwargs,
        )

    def check_annoy(self) -> None:
        """Skip the calling test when ``annoy`` (needed for nearest neighbours) is missing.

        Raises
        ------
        unittest.SkipTest
        """
        try:
            import annoy  # noqa: F401
        except ImportError:
            raise unittest.SkipTest(
                f"Skipping tests for {self.data_influence_class.__name__}, "
                "because it requires the Annoy module."
            ) from None


def _to_safe_name(text: str) -> str:
    """``text`` with every run of characters other than letters, digits and ``_`` replaced by
    ``_`` (``parameterized.to_safe_name``, without needing ``parameterized``)."""
    return re.sub("[^a-zA-Z0-9_]+", "_", text)


def generate_test_name(
    testcase_func: Callable,
    param_num: str,
    param: Any,
    args_to_skip: list[str] | None = None,
) -> str:
    """A readable name for one case of a parameterized test.

    ``<function name>_<param_num>_<args>``, where ``<args>`` joins, per positional argument
    of ``param`` (matched to ``testcase_func``'s parameters, ``self`` skipped): the
    parameter's name for ``True`` (nothing for ``False``), a function's ``__name__``, and
    otherwise ``str(arg)``, preceded by the parameter's name when that string is numeric.

    Parameters
    ----------
    testcase_func : callable
    param_num : str
    param : parameterized.param
        The case; only ``param.args`` is read.
    args_to_skip : list of str, optional
        Parameter names left out of the name.

    Returns
    -------
    str
    """
    skipped = set(args_to_skip or ())
    names = list(inspect.signature(testcase_func).parameters)
    if names[0] == "self":
        names = names[1:]

    parts: list[str] = []
    for i, arg in enumerate(param.args):
        # indexing (not zip) so that more arguments than parameters fails, as in Captum
        name = names[i]
        if name in skipped:
            continue
        if isinstance(arg, bool):
            if arg:
                parts.append(name)
        elif isfunction(arg):
            parts.append(arg.__name__)
        else:
            text = str(arg)
            if text.isnumeric():
                parts.append(name)
            parts.append(text)
    return f"{testcase_func.__name__}_{param_num}_{_to_safe_name('_'.join(parts))}"


def build_test_name_func(args_to_skip: list[str] | None = None) -> partial:
    """:func:`generate_test_name` with ``args_to_skip`` bound, for ``name_func`` of
    ``parameterized.expand``.

    Parameters
    ----------
    args_to_skip : list of str, optional

    Returns
    -------
    functools.partial
    """
    return partial(generate_test_name, args_to_skip=args_to_skip)


def _format_batch_into_tuple(
    inputs: tuple | Tensor, targets: Tensor, unpack_inputs: bool
) -> tuple[Tensor | tuple[Any, ...], Tensor]:
    """A batch as ``(*inputs, targets)`` if ``unpack_inputs``, else ``(inputs, targets)``."""
    if unpack_inputs:
        return (*inputs, targets)
    return (inputs, targets)


# "" is the CPU; the GPU settings only where a GPU is present
GPU_SETTING_LIST = (
    ["", "cuda", "cuda_data_parallel"]
    if torch.cuda.is_available() and torch.cuda.device_count() != 0
    else [""]
)
