"""Small fixed models that Captum 0.9's test suite runs attributions on.

The same classes as ``captum.testing.helpers.basic_models``: names, constructor
signatures, submodule names (tests address layers by them, e.g. ``model.linear1``) and
forwards. Layers with fixed weights are still created with their random default
initialisation before the weights are replaced, so a model consumes the global RNG
exactly as Captum's does and, under the same seed, has the same ``state_dict`` and gives
the same outputs. Most of them are small enough that attributions can be worked out by
hand; several come from the Integrated Gradients paper (https://arxiv.org/abs/1703.01365).

The forwards keep plain (PEP 604) type hints so that the models Captum scripts with
``torch.jit.script`` can be scripted here too.
"""

from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.futures import Future

from whybox._utils.typing import PassThroughOutputType

_Layer = TypeVar("_Layer", bound=nn.Module)


def _fixed(layer: _Layer, weight: Tensor | None = None, bias: Tensor | None = None) -> _Layer:
    """Replace ``layer``'s weight and/or bias with new parameters holding the given values.

    The layer has already drawn its default initialisation from the RNG; replacing a
    parameter keeps its place in the ``state_dict``.
    """
    if weight is not None:
        layer.weight = nn.Parameter(weight)
    if bias is not None:
        layer.bias = nn.Parameter(bias)
    return layer


# --------------------------------------------------------------------------------------
# parameter-free models
# --------------------------------------------------------------------------------------


class MixedKwargsAndArgsModule(nn.Module):
    """``x + y``, or ``x`` when ``y`` is not given: a forward taking an optional keyword."""

    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if y is None:
            return x
        return x + y


class BasicModel(nn.Module):
    """``1 - relu(1 - x)``, i.e. ``min(x, 1)``: saturates above 1 (zero gradient there)."""

    def __init__(self) -> None:
        super().__init__()

    def forward(self, input: Tensor) -> Tensor:
        return 1 - F.relu(1 - input)


class BasicModel2(nn.Module):
    """``relu(relu(x1) - 1 - relu(x2))``: example model one of the Integrated Gradients paper."""

    def __init__(self) -> None:
        super().__init__()

    def forward(self, input1: Tensor, input2: Tensor) -> Tensor:
        return F.relu(F.relu(input1) - 1 - F.relu(input2))


class BasicModel3(nn.Module):
    """``relu(relu(x1 - 1) - relu(x2))``: example model two of the Integrated Gradients paper."""

    def __init__(self) -> None:
        super().__init__()

    def forward(self, input1: Tensor, input2: Tensor) -> Tensor:
        return F.relu(F.relu(input1 - 1) - F.relu(input2))


class BasicModel4_MultiArgs(nn.Module):
    """``relu(relu(x1 - 1) - relu(x2) / a1)[:, a2]``: a divisor and an output column given
    as additional (non-attributed) forward arguments."""

    def __init__(self) -> None:
        super().__init__()

    def forward(
        self,
        input1: Tensor,
        input2: Tensor,
        additional_input1: bool | float | int | Tensor,
        additional_input2: int = 0,
    ) -> Tensor:
        scaled2 = F.relu(input2).div(additional_input1)
        return F.relu(F.relu(input1 - 1) - scaled2)[:, additional_input2]


class BasicModel5_MultiArgs(nn.Module):
    """``relu(relu(x1 - 1) * a1[0] - relu(x2) * a1[1])[:, a2]``: a list of two factors and an
    output column given as additional forward arguments."""

    def __init__(self) -> None:
        super().__init__()

    def forward(
        self,
        input1: Tensor,
        input2: Tensor,
        additional_input1: list[int],
        additional_input2: int = 0,
    ) -> Tensor:
        first = F.relu(input1 - 1) * additional_input1[0]
        second = F.relu(input2) * additional_input1[1]
        return F.relu(first - second)[:, additional_input2]


class BasicModel6_MultiTensor(nn.Module):
    """``1 - relu(1 - (x1 + x2))[:, 1]``: two inputs summed, column 1 of a saturating output."""

    def __init__(self) -> None:
        super().__init__()

    def forward(self, input1: Tensor, input2: Tensor) -> Tensor:
        summed = input1 + input2
        return 1 - F.relu(1 - summed)[:, 1]


class ReLUDeepLiftModel(nn.Module):
    """``2 * relu1(x1) + x3 * relu2(x2 - 1.5)``: the two-ReLU example of the DeepLift talk
    (https://www.youtube.com/watch?v=f_iAM0NPwnM), with ReLU modules DeepLift can hook."""

    def __init__(self) -> None:
        super().__init__()
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()

    def forward(self, x1: Tensor, x2: Tensor, x3: int = 2) -> Tensor:
        return 2 * self.relu1(x1) + x3 * self.relu2(x2 - 1.5)


class TanhDeepLiftModel(nn.Module):
    """``2 * tanh1(x1) + 2 * tanh2(x2 - 1.5)``: :class:`ReLUDeepLiftModel` with activations
    that can be negative."""

    def __init__(self) -> None:
        super().__init__()
        self.tanh1 = nn.Tanh()
        self.tanh2 = nn.Tanh()

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return 2 * self.tanh1(x1) + 2 * self.tanh2(x2 - 1.5)


class BasicModel_MaxPool_ReLU(nn.Module):
    """``relu(maxpool1d_3(x)).sum(dim=1)``; ``inplace`` makes the ReLU after the pool in-place."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.maxpool = nn.MaxPool1d(3)
        self.relu = nn.ReLU(inplace=inplace)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.maxpool(x)).sum(dim=1)


class MultiRelu(nn.Module):
    """``(relu1(arg1), relu2(arg2))``: a module with two inputs and two outputs (both ReLUs
    in-place when ``inplace``), for layer methods on multi-input/-output layers."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.relu1 = nn.ReLU(inplace=inplace)
        self.relu2 = nn.ReLU(inplace=inplace)

    def forward(self, arg1: Tensor, arg2: Tensor) -> tuple[Tensor, Tensor]:
        return self.relu1(arg1), self.relu2(arg2)


class PassThroughLayerOutput(nn.Module):
    """Returns its input unchanged: wraps a non-tensor value (a list, an int tensor, ...) as
    a layer output that gradient-based layer methods cannot handle."""

    def __init__(self) -> None:
        super().__init__()

    def forward(self, output: PassThroughOutputType) -> PassThroughOutputType:
        return output


# --------------------------------------------------------------------------------------
# linear models
# --------------------------------------------------------------------------------------


class BasicLinearReLULinear(nn.Module):
    """``fc2(relu1(fc1(x)))`` with random weights: ``in_features -> out_features -> 1``."""

    def __init__(self, in_features: int, out_features: int = 5, bias: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, out_features, bias=bias)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(out_features, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.relu1(self.fc1(x)))


class BasicLinearModel(nn.Module):
    """``linear(cat(x1, x2, dim=-1))``: one random ``Linear(7, 1)`` over two concatenated inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(7, 1)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return self.linear(torch.cat((x1, x2), dim=-1))


class BasicLinearModel2(nn.Module):
    """``linear(x)``: one random bias-free ``Linear(in_features, out_features)``."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)

    def forward(self, input: Tensor) -> Tensor:
        return self.linear(input)


class BasicLinearModel_Multilayer(nn.Module):
    """``linear2(linear1(x))``: two random bias-free linear layers with nothing in between."""

    def __init__(self, in_features: int, hidden_nodes: int, out_features: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(in_features, hidden_nodes, bias=False)
        self.linear2 = nn.Linear(hidden_nodes, out_features, bias=False)

    def forward(self, input: Tensor) -> Tensor:
        return self.linear2(self.linear1(input))


class LinearMaxPoolLinearModel(nn.Module):
    """``lin2(pool1(lin1(x[:, None]))[:, 0])`` with ``lin1`` the 4x4 identity, a width-4 max
    pool and ``lin2`` the 1x1 one: the maximum of the 4 features, through linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.lin1 = _fixed(nn.Linear(4, 4, bias=False), weight=torch.eye(4, 4))
        self.pool1 = nn.MaxPool1d(4)
        self.lin2 = _fixed(nn.Linear(1, 1, bias=False), weight=torch.ones(1, 1))

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.pool1(self.lin1(x.unsqueeze(1)))
        return self.lin2(pooled[:, 0, :])


class BasicModelWithReusedModules(nn.Module):
    """``relu(lin2(relu(lin1(x))))`` with random ``Linear(3, 2)``, ``Linear(2, 2)``: the same
    ReLU module is called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.lin1 = nn.Linear(3, 2)
        self.relu = nn.ReLU()
        self.lin2 = nn.Linear(2, 2)

    def forward(self, inputs: Tensor) -> Tensor:
        return self.relu(self.lin2(self.relu(self.lin1(inputs))))


class BasicModelWithReusedLinear(nn.Module):
    """``relu(lin1(relu(lin1(x))))`` with a random ``Linear(3, 3)``: the same linear layer
    (and ReLU) is called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.lin1 = nn.Linear(3, 3)
        self.relu = nn.ReLU()

    def forward(self, inputs: Tensor) -> Tensor:
        hidden = self.relu(self.lin1(inputs))
        return self.relu(self.lin1(hidden))


class BasicModelWithSparseInputs(nn.Module):
    """``sum(lin1(x) + s[0])`` with ``lin1`` weights ``[3, 1, 2]`` and bias 0, where ``s`` is a
    possibly empty "sparse" tensor (nothing is added when it is empty)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin1 = _fixed(
            nn.Linear(3, 1), weight=torch.tensor([[3.0, 1.0, 2.0]]), bias=torch.zeros(1)
        )

    def forward(self, inputs: Tensor, sparse_list: Tensor) -> Tensor:
        extra = sparse_list[0] if torch.numel(sparse_list) > 0 else 0
        return (self.lin1(inputs) + extra).sum()


class ReLULinearModel(nn.Module):
    """``l3(relu(cat(l1(x1), x3 * l2(x2))))`` with fixed weights ``l1 = [3, 1, 0]``,
    ``l2 = [2, 3, 0]``, ``l3 = [1, 1]``; ``inplace`` makes the ReLU in-place. Similar to
    DeepExplain's test model."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.l1 = _fixed(nn.Linear(3, 1, bias=False), weight=torch.tensor([[3.0, 1.0, 0.0]]))
        self.l2 = _fixed(nn.Linear(3, 1, bias=False), weight=torch.tensor([[2.0, 3.0, 0.0]]))
        self.relu = nn.ReLU(inplace=inplace)
        self.l3 = _fixed(nn.Linear(2, 1, bias=False), weight=torch.tensor([[1.0, 1.0]]))

    def forward(self, x1: Tensor, x2: Tensor, x3: int = 1) -> Tensor:
        joined = torch.cat([self.l1(x1), x3 * self.l2(x2)], dim=1)
        return self.l3(self.relu(joined))


class SimpleLRPModel(nn.Module):
    """``dropout(linear2(relu(linear(x))))`` with all weights of ``linear`` (3 -> 3) equal to
    2 and of ``linear2`` (3 -> 1) to 3, no biases, and ``Dropout(p=0.01)``: the LRP test
    model; ``inplace`` makes the ReLU in-place."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 3, bias=False)
        self.relu = nn.ReLU(inplace=inplace)
        self.linear2 = nn.Linear(3, 1, bias=False)
        with torch.no_grad():
            self.linear.weight.fill_(2.0)
            self.linear2.weight.fill_(3.0)
        self.dropout = nn.Dropout(p=0.01)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.linear2(self.relu(self.linear(x))))


# --------------------------------------------------------------------------------------
# embedding models
# --------------------------------------------------------------------------------------


class TextModule(nn.Module):
    """``inner_embedding(input)`` (plus ``inner_embedding2(another_input)`` when that is given):
    a module holding embedding layers, nested in :class:`BasicEmbeddingModel` to test
    nested (interpretable) embedding layers.

    With ``second_embedding``, ``inner_embedding2`` runs on every call (on ``input`` when
    ``another_input`` is not given), even when its output is not used.
    """

    def __init__(
        self, num_embeddings: int, embedding_dim: int, second_embedding: bool = False
    ) -> None:
        super().__init__()
        self.inner_embedding = nn.Embedding(num_embeddings, embedding_dim)
        self.second_embedding = second_embedding
        if second_embedding:
            self.inner_embedding2 = nn.Embedding(num_embeddings, embedding_dim)

    def forward(self, input: Tensor | None = None, another_input: Tensor | None = None) -> Tensor:
        assert input is not None, "The inputs to embedding module must be specified"
        embedding = self.inner_embedding(input)
        if self.second_embedding:
            second = self.inner_embedding2(input if another_input is None else another_input)
            return embedding if another_input is None else embedding + second
        if another_input is not None:
            raise UnboundLocalError(
                "TextModule got `another_input` but was built without `second_embedding`"
            )
        return embedding


class BasicEmbeddingModel(nn.Module):
    """``sum(linear2(relu(linear1(embedding1(i1) + embedding2(i2, i3)))), dim=1)``.

    ``embedding1`` is an ``nn.Embedding`` and ``embedding2`` a :class:`TextModule` (with a
    second inner embedding when ``nested_second_embedding``); ``linear1`` (no bias) and
    ``linear2`` have all-ones weights, ``linear2``'s bias stays random. For tests of nested
    interpretable embedding layers.
    """

    def __init__(
        self,
        num_embeddings: int = 30,
        embedding_dim: int = 100,
        hidden_dim: int = 256,
        output_dim: int = 1,
        nested_second_embedding: bool = False,
    ) -> None:
        super().__init__()
        self.embedding1 = nn.Embedding(num_embeddings, embedding_dim)
        self.embedding2 = TextModule(num_embeddings, embedding_dim, nested_second_embedding)
        self.linear1 = _fixed(
            nn.Linear(embedding_dim, hidden_dim, bias=False),
            weight=torch.ones(hidden_dim, embedding_dim),
        )
        self.relu = nn.ReLU()
        self.linear2 = _fixed(
            nn.Linear(hidden_dim, output_dim), weight=torch.ones(output_dim, hidden_dim)
        )

    def forward(self, input1: Tensor, input2: Tensor, input3: Tensor | None = None) -> Tensor:
        embeddings = self.embedding1(input1) + self.embedding2(input2, input3)
        return self.linear2(self.relu(self.linear1(embeddings))).sum(1)


# --------------------------------------------------------------------------------------
# the multi-layer model and its wrappers
# --------------------------------------------------------------------------------------


def _identity_linear() -> nn.Linear:
    """``Linear(3, 3)`` computing the identity (weight ``eye(3)``, bias 0)."""
    return _fixed(nn.Linear(3, 3), weight=torch.eye(3), bias=torch.zeros(3))


def _ones_linear(in_features: int, out_features: int, bias: list[float]) -> nn.Linear:
    """``Linear(in_features, out_features)`` with all-ones weight and the given bias."""
    return _fixed(
        nn.Linear(in_features, out_features),
        weight=torch.ones(out_features, in_features),
        bias=torch.tensor(bias),
    )


class _MultiLayerBase(nn.Module):
    """The layers and computation shared by :class:`BasicModel_MultiLayer` and
    :class:`BasicModel_MultiLayer_with_Future`."""

    def __init__(self, inplace: bool = False, multi_input_module: bool = False) -> None:
        super().__init__()
        self.multi_input_module = multi_input_module
        self.linear0 = _identity_linear()
        self.linear1 = _ones_linear(3, 4, [-10.0, 1.0, 1.0, 1.0])
        self.linear1_alt = _ones_linear(3, 4, [-10.0, 1.0, 1.0, 1.0])
        self.multi_relu = MultiRelu(inplace=inplace)
        self.relu = nn.ReLU(inplace=inplace)
        self.linear2 = _ones_linear(4, 2, [-1.0, 1.0])

    def _compute(self, x: Tensor, add_input: Tensor | None, multidim_output: bool) -> Tensor:
        input = x if add_input is None else x + add_input
        lin1_out = self.linear1(self.linear0(input))
        if self.multi_input_module:
            relu_out1, relu_out2 = self.multi_relu(lin1_out, self.linear1_alt(input))
            relu_out = relu_out1 + relu_out2
            # `relu` runs but its output is dropped: a layer that does not reach the output
            self.relu(lin1_out)
        else:
            relu_out = self.relu(lin1_out)
        lin2_out = self.linear2(relu_out)
        if not multidim_output:
            return lin2_out
        stacked = torch.stack((lin2_out, 2 * lin2_out), dim=2)
        return torch.stack((stacked, 4 * stacked), dim=3)


class BasicModel_MultiLayer(_MultiLayerBase):
    """``linear2(relu(linear1(linear0(x + add_input))))`` with fixed weights: ``linear0`` the
    3x3 identity, ``linear1`` all ones with bias ``[-10, 1, 1, 1]`` (so the first hidden
    unit is off for small inputs), ``linear2`` all ones with bias ``[-1, 1]``.

    ``inplace`` makes the ReLUs in-place. With ``multi_input_module`` the hidden layer is
    instead ``sum(multi_relu(linear1(...), linear1_alt(x + add_input)))`` and ``relu`` runs
    with its output unused. With ``multidim_output`` the ``(N, 2)`` output is expanded to
    ``(N, 2, 2, 2)`` by factors 1, 2, 4, 8.
    """

    def forward(
        self, x: Tensor, add_input: Tensor | None = None, multidim_output: bool = False
    ) -> Tensor:
        return self._compute(x, add_input, multidim_output)


class BasicModel_MultiLayer_with_Future(_MultiLayerBase):
    """:class:`BasicModel_MultiLayer` whose forward returns its output in a completed
    ``torch.futures.Future``, for methods that accept asynchronous forwards."""

    def forward(
        self, x: Tensor, add_input: Tensor | None = None, multidim_output: bool = False
    ) -> Future[Tensor]:
        output = self._compute(x, add_input, multidim_output)
        result: Future[Tensor] = Future()
        result.set_result(output)
        return result


class BasicModelBoolInput(nn.Module):
    """``mod(x.float() * mult, add_input)`` with ``mod`` a :class:`BasicModel_MultiLayer`:
    takes a boolean input tensor (asserted)."""

    def __init__(self) -> None:
        super().__init__()
        self.mod = BasicModel_MultiLayer()

    def forward(self, x: Tensor, add_input: Tensor | None = None, mult: float = 10.0) -> Tensor:
        assert x.dtype is torch.bool, "Input must be boolean"
        return self.mod(x.float() * mult, add_input)


class BasicModelBoolInput_with_Future(nn.Module):
    """:class:`BasicModelBoolInput` over :class:`BasicModel_MultiLayer_with_Future`: returns a
    ``Future``."""

    def __init__(self) -> None:
        super().__init__()
        self.mod = BasicModel_MultiLayer_with_Future()

    def forward(
        self, x: Tensor, add_input: Tensor | None = None, mult: float = 10.0
    ) -> Future[Tensor]:
        assert x.dtype is torch.bool, "Input must be boolean"
        return self.mod(x.float() * mult, add_input)


class BasicModel_MultiLayer_MultiInput(nn.Module):
    """``model(scale * (x1 + x2 + x3))`` with ``model`` a :class:`BasicModel_MultiLayer`:
    three tensor inputs and a non-tensor ``scale``."""

    def __init__(self) -> None:
        super().__init__()
        self.model = BasicModel_MultiLayer()

    def forward(self, x1: Tensor, x2: Tensor, x3: Tensor, scale: int) -> Tensor:
        return self.model(scale * (x1 + x2 + x3))


class BasicModel_MultiLayer_TupleInput(nn.Module):
    """``model(x[0] + x[1] + x[2])`` with ``model`` a :class:`BasicModel_MultiLayer`: one
    argument that is a tuple of three tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.model = BasicModel_MultiLayer()

    def forward(self, x: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        return self.model(x[0] + x[1] + x[2])


class BasicModel_MultiLayer_MultiInput_with_Future(nn.Module):
    """:class:`BasicModel_MultiLayer_MultiInput` over
    :class:`BasicModel_MultiLayer_with_Future`: returns a ``Future``."""

    def __init__(self) -> None:
        super().__init__()
        self.model = BasicModel_MultiLayer_with_Future()

    def forward(self, x1: Tensor, x2: Tensor, x3: Tensor, scale: int) -> Future[Tensor]:
        return self.model(scale * (x1 + x2 + x3))


class BasicModel_MultiLayer_TrueMultiInput(nn.Module):
    """``m1(x1) + m234(x2, x3, x4, scale=1)`` (``x1`` in place of a missing ``x4``): two
    independent sub-models, :class:`BasicModel_MultiLayer` and
    :class:`BasicModel_MultiLayer_MultiInput`, so the inputs reach the output through
    different layers."""

    def __init__(self) -> None:
        super().__init__()
        self.m1 = BasicModel_MultiLayer()
        self.m234 = BasicModel_MultiLayer_MultiInput()

    def forward(self, x1: Tensor, x2: Tensor, x3: Tensor, x4: Tensor | None = None) -> Tensor:
        a = self.m1(x1)
        b = self.m234(x2, x3, x1 if x4 is None else x4, scale=1)
        return a + b


class BasicModel_GradientLayerAttribution(nn.Module):
    """The :class:`BasicModel_MultiLayer` network, extended with layers whose outputs are
    not plain float tensors, for layer-gradient methods and their error paths.

    From ``x + add_input``: ``linear0`` (identity), then ``linear1`` and ``linear1_alt``
    (both all ones, bias ``[-10, 1, 1, 1]``); ``relu(linear1)`` feeds ``linear2`` (all ones,
    bias ``[-1, 1]``), whose output goes through two fresh random ``Linear(2, 2)`` layers
    created in every forward (so the forward draws from the RNG), passed as a list through
    ``list_output_layer`` and concatenated; ``linear3(linear1_alt)`` (like ``linear2``) is
    cast to int64 and passed through ``int_layer``. The output is the concatenation,
    ``(N, 6)``, or with ``dict_output`` a dict ``{"task 1": column 0, ...}``.

    ``relu_alt`` runs on ``linear1_alt``'s output and ``unsupported_layer`` on
    ``unsupported_layer_output`` (when given), both with their outputs unused.
    """

    def __init__(
        self,
        inplace: bool = False,
        unsupported_layer_output: PassThroughOutputType | None = None,
        dict_output: bool = True,
    ) -> None:
        super().__init__()
        self.dict_output = dict_output
        self.unsupported_layer_output = unsupported_layer_output
        self.linear0 = _identity_linear()
        self.linear1 = _ones_linear(3, 4, [-10.0, 1.0, 1.0, 1.0])
        self.linear1_alt = _ones_linear(3, 4, [-10.0, 1.0, 1.0, 1.0])
        self.relu = nn.ReLU(inplace=inplace)
        self.relu_alt = nn.ReLU(inplace=False)
        self.unsupported_layer = PassThroughLayerOutput()
        self.linear2 = _ones_linear(4, 2, [-1.0, 1.0])
        self.linear3 = _ones_linear(4, 2, [-1.0, 1.0])
        self.list_output_layer = PassThroughLayerOutput()
        self.int_layer = PassThroughLayerOutput()

    def forward(self, x: Tensor, add_input: Tensor | None = None) -> dict[str, Tensor] | Tensor:
        input = x if add_input is None else x + add_input
        lin0_out = self.linear0(input)
        lin1_out = self.linear1(lin0_out)
        lin1_out_alt = self.linear1_alt(lin0_out)

        if self.unsupported_layer_output is not None:
            self.unsupported_layer(self.unsupported_layer_output)
        self.relu_alt(lin1_out_alt)  # a supported layer whose output is unused

        lin2_out = self.linear2(self.relu(lin1_out))
        list_out = self.list_output_layer([nn.Linear(2, 2)(lin2_out) for _ in range(2)])
        int_out = self.int_layer(self.linear3(lin1_out_alt).to(torch.int64))
        output = torch.cat((torch.cat(list_out, dim=1), int_out), dim=1)
        if not self.dict_output:
            return output
        # a dict output needs an output accessor in the attribution method
        return {f"task {i + 1}": output[:, i] for i in range(output.shape[1])}


# --------------------------------------------------------------------------------------
# convolutional models
# --------------------------------------------------------------------------------------


class Conv1dSeqModel(nn.Module):
    """``seq(x)`` with ``seq = Sequential(Conv1d(4, 2, 1), ReLU(), Linear(1000, 1))``, random
    weights: takes ``(N, 4, 1000)`` inputs; layers addressed as ``seq[0]``, ...."""

    def __init__(self) -> None:
        super().__init__()
        self.seq = nn.Sequential(nn.Conv1d(4, 2, 1), nn.ReLU(), nn.Linear(1000, 1))

    def forward(self, inputs: Tensor) -> Tensor:
        return self.seq(inputs)


class BasicModel_ConvNet_One_Conv(nn.Module):
    """``relu2(fc1(relu1(conv1(x + x2)).view(-1, 8)))`` on ``(N, 1, 4, 4)`` inputs.

    ``conv1`` is a 3x3 ``Conv2d(1, 2)`` with all-ones kernels and biases ``[-50, -75]``,
    ``fc1`` a ``Linear(8, 4)`` with weight rows ``[1, 1, 1, 1, 1, -1, -1, -1]`` and bias 0;
    ``inplace`` makes both ReLUs in-place.
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.conv1 = _fixed(
            nn.Conv2d(1, 2, 3, 1),
            weight=torch.ones(2, 1, 3, 3),
            bias=torch.tensor([-50.0, -75.0]),
        )
        self.relu1 = nn.ReLU(inplace=inplace)
        self.fc1 = _fixed(
            nn.Linear(8, 4),
            weight=torch.cat([torch.ones(4, 5), -1 * torch.ones(4, 3)], dim=1),
            bias=torch.zeros(4),
        )
        self.relu2 = nn.ReLU(inplace=inplace)

    def forward(self, x: Tensor, x2: Tensor | None = None) -> Tensor:
        if x2 is not None:
            x = x + x2
        hidden = self.relu1(self.conv1(x)).view(-1, 8)
        return self.relu2(self.fc1(hidden))


class BasicModel_ConvNetWithPaddingDilation(nn.Module):
    """``fc1(relu1(conv1(x)).reshape(N, 2, -1)).reshape(N, -1)`` with random weights:
    ``conv1`` a 3x3 ``Conv2d(1, 2)`` with padding 3, stride 2 and dilation 2, ``fc1`` a
    ``Linear(16, 4)`` (so ``(N, 1, 4, 4)`` inputs give ``(N, 8)``); ``inplace`` makes the
    ReLU in-place."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=3, stride=2, dilation=2)
        self.relu1 = nn.ReLU(inplace=inplace)
        self.fc1 = nn.Linear(16, 4)

    def forward(self, x: Tensor) -> Tensor:
        bsz = x.shape[0]
        hidden = self.relu1(self.conv1(x)).reshape(bsz, 2, -1)
        return self.fc1(hidden).reshape(bsz, -1)


class _ConvPoolNet(nn.Module):
    """Two conv -> ReLU -> max-pool(2) stages (1 -> 2 -> 4 channels, kernel 3, random
    weights), flattened to ``(-1, 4)``, then ``fc1`` (4 -> 8, all-ones weight), ReLU,
    ``fc2`` (8 -> 10, all-ones weight) and a softmax over the 10 classes. The convolutions
    and pools are 1-, 2- or 3-dimensional."""

    def __init__(self, conv: type[nn.Module], pool: type[nn.Module]) -> None:
        super().__init__()
        self.conv1 = conv(1, 2, 3)
        self.relu1 = nn.ReLU()
        self.pool1 = pool(2)
        self.conv2 = conv(2, 4, 3)
        self.relu2 = nn.ReLU()
        self.pool2 = pool(2)
        self.fc1 = _fixed(nn.Linear(4, 8), weight=torch.ones(8, 4))
        self.relu3 = nn.ReLU()
        self.fc2 = _fixed(nn.Linear(8, 10), weight=torch.ones(10, 8))
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(x.view(-1, 4)))
        return self.softmax(self.fc2(x))


class BasicModel_ConvNet(_ConvPoolNet):
    """A small 2-d conv net ending in a softmax over 10 classes, for ``(N, 1, 10, 10)``
    inputs: two ``Conv2d`` (kernel 3) -> ReLU -> ``MaxPool2d(2)`` stages with random
    weights, then ``fc1`` (4 -> 8) -> ReLU -> ``fc2`` (8 -> 10) with all-ones weights
    (random biases)."""

    def __init__(self) -> None:
        super().__init__(nn.Conv2d, nn.MaxPool2d)


class BasicModel_ConvNet_MaxPool1d(_ConvPoolNet):
    """:class:`BasicModel_ConvNet` with 1-d convolutions and ``MaxPool1d`` (for ``(N, 1, 10)``
    inputs): DeepLift treats max-pool modules differently from other modules."""

    def __init__(self) -> None:
        super().__init__(nn.Conv1d, nn.MaxPool1d)


class BasicModel_ConvNet_MaxPool3d(_ConvPoolNet):
    """:class:`BasicModel_ConvNet` with 3-d convolutions and ``MaxPool3d`` (for
    ``(N, 1, 10, 10, 10)`` inputs): DeepLift treats max-pool modules differently from other
    modules."""

    def __init__(self) -> None:
        super().__init__(nn.Conv3d, nn.MaxPool3d)
