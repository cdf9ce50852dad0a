"""Per-example gradients of a loss with respect to model parameters, by ``torch.func``.

Every gradient-based influence method needs, for each example ``i``, the flattened
gradient ``g_i = d loss_i / d theta`` (``loss_i``: the loss of example ``i`` alone, or
the model's output summed when there is no loss). They are computed as
``vmap(grad(loss_of_one_example))`` over a chunk of rows with ``functional_call``: one
vectorised pass per chunk instead of one backward pass per example, never touching the
model's parameters, ``.grad`` or ``requires_grad``. A model that ``vmap`` cannot trace
falls back, with a warning, to one backward pass per example.

Which parameters, and how the loss reduces, follow Captum:

* ``sample_wise_grads_per_batch=True`` (Captum's hook trick): the parameters of the
  ``nn.Linear`` and ``nn.Conv2d`` modules (of the model, or of the given layers), the loss
  reducing a batch by ``"sum"`` or ``"mean"``;
* otherwise: every parameter that requires grad (of the model or of the layers), the loss
  giving one value per example (``reduction="none"``).

Either way the per-example loss is the loss of the example as a batch of one, which is
what both of Captum's paths compute (its ``"mean"`` case multiplies by the batch size).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from whybox.attr._assertion_errors import fail_assert
from whybox.core.chunks import ChunkSize, is_auto
from whybox.core.hooks import capture

from ._data import Chunk
from ._layout import ChannelsLast

__all__ = [
    "SAMPLE_WISE_MODULES",
    "check_loss_fn",
    "layer_modules",
    "parameter_names",
    "PerExampleGradients",
    "rows_for",
    "Factors",
    "FactoredGradients",
]

#: the modules Captum's sample-wise trick differentiates
SAMPLE_WISE_MODULES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)

#: bytes of per-example gradients held at once (chunks of rows are sized by it)
_GRADIENT_BYTES = {"cpu": 64 * 2**20, "other": 1024 * 2**20}
_MIN_ROWS, _MAX_ROWS = 8, 8192


def rows_for(chunk_size: ChunkSize, row_bytes: int, device: torch.device, *, owner: str) -> int:
    """Rows per chunk: the caller's ``chunk_size``, or (``"auto"`` / ``None``) as many as
    fit the gradient budget of the device."""
    if is_auto(chunk_size):
        budget = _GRADIENT_BYTES["cpu" if device.type == "cpu" else "other"]
        return int(min(max(budget // max(row_bytes, 1), _MIN_ROWS), _MAX_ROWS))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        fail_assert(owner, "chunk_size", "an int >= 1, 'auto' or None", chunk_size)
    return int(chunk_size)


def check_loss_fn(
    owner: str, loss_fn: Any, name: str, sample_wise_grads_per_batch: bool = True
) -> str:
    """The loss's reduction as Captum infers it: ``"sum"`` without a loss (the outputs are
    differentiated), else the loss's ``reduction`` attribute, which must be ``"sum"`` /
    ``"mean"`` with the sample-wise trick and ``"none"`` without; a loss without the
    attribute is assumed to sum (trick) or to give per-example values (no trick), with
    Captum's warnings."""
    if loss_fn is None:
        return "sum"
    if not callable(loss_fn):
        fail_assert(owner, name, "a callable loss(outputs, targets) or None", loss_fn)
    if hasattr(loss_fn, "reduction"):
        reduction = loss_fn.reduction
        if sample_wise_grads_per_batch:
            if reduction not in ("sum", "mean"):
                fail_assert(
                    owner,
                    name,
                    'a loss with reduction "sum" or "mean" when sample_wise_grads_per_batch '
                    "is True",
                    f"reduction {reduction!r}",
                    raw=True,
                )
            return str(reduction)
        if reduction != "none":
            fail_assert(
                owner,
                name,
                'a loss with reduction "none" when sample_wise_grads_per_batch is False',
                f"reduction {reduction!r}",
                raw=True,
            )
        return "none"
    if sample_wise_grads_per_batch:
        warnings.warn(
            f"Since `{name}` has no 'reduction' attribute, and `sample_wise_grads_per_batch` "
            f"is True, the implementation assumes that `{name}` is a 'reduction' loss function "
            "that reduces the per-example losses by taking their *sum*. If it takes their "
            f'mean, set `{name}.reduction = "mean"`.',
            stacklevel=3,
        )
        return "sum"
    warnings.warn(
        f'Since `{name}` has no "reduction" attribute, and `sample_wise_grads_per_batch` is '
        f'False, the implementation assumes that `{name}` is a "per-example" loss function. '
        "Please ensure that this is the case.",
        stacklevel=3,
    )
    return "none"


def layer_modules(model: nn.Module, layers: Any, *, owner: str) -> list[nn.Module] | None:
    """The modules named by ``layers`` (a non-empty list of names), or ``None``."""
    if layers is None:
        return None
    if not isinstance(layers, list) or not layers or not all(isinstance(n, str) for n in layers):
        fail_assert(owner, "layers", "None or a non-empty list of layer names", layers)
    found = []
    for name in layers:
        try:
            found.append(model.get_submodule(name))
        except AttributeError:
            fail_assert(owner, "layers", "names of submodules of the model", name)
    return found


def parameter_names(
    model: nn.Module, modules: Sequence[nn.Module] | None, sample_wise: bool, *, owner: str
) -> list[str]:
    """Names of the differentiated parameters, in Captum's order (the model's parameter
    order, or layer by layer)."""
    name_of = {id(p): n for n, p in model.named_parameters()}
    if modules is None:
        if sample_wise:
            chosen = {
                id(p)
                for m in model.modules()
                if isinstance(m, SAMPLE_WISE_MODULES)
                for p in m.parameters(recurse=False)
            }
            names = [n for n, p in model.named_parameters() if id(p) in chosen]
        else:
            names = [n for n, p in model.named_parameters() if p.requires_grad]
    else:
        names = []
        for module in modules:
            inner = (
                [m for m in module.modules() if isinstance(m, SAMPLE_WISE_MODULES)]
                if sample_wise
                else [module]
            )
            for m in inner:
                for p in m.parameters(recurse=not sample_wise):
                    if id(p) in name_of and name_of[id(p)] not in names:
                        names.append(name_of[id(p)])
    if not names:
        what = (
            "layers with nn.Linear / nn.Conv2d parameters (sample_wise_grads_per_batch=True)"
            if sample_wise
            else "layers with parameters"
        )
        fail_assert(owner, "layers", what, "no parameter to differentiate", raw=True)
    return names


class PerExampleGradients:
    """``g_i`` for the rows of chunks, flattened and concatenated over parameters.

    Parameters
    ----------
    model : nn.Module
    names : list of str
        The differentiated parameters (see :func:`parameter_names`), in this order.
    owner : str
        The method named in errors and warnings.
    """

    def __init__(self, model: nn.Module, names: list[str], *, owner: str) -> None:
        self.model = model
        self.names = names
        self.owner = owner
        self._loop_reason: str | None = None

    @property
    def size(self) -> int:
        """``P``: the number of differentiated scalars."""
        params = dict(self.model.named_parameters())
        return sum(params[n].numel() for n in self.names)

    def row_bytes(self) -> int:
        params = dict(self.model.named_parameters())
        return sum(params[n].numel() * params[n].element_size() for n in self.names)

    def __call__(self, chunk: Chunk, loss_fn: Callable | None) -> Tensor:
        """The chunk's per-example gradients, ``(rows, P)``, in the parameters' dtype."""
        everything = dict(self.model.named_parameters())
        chosen = {n: everything[n].detach() for n in self.names}
        constants = {n: p.detach() for n, p in everything.items() if n not in chosen}
        constants.update(dict(self.model.named_buffers()))
        values = (*chunk.features, chunk.labels)
        batched = [
            i
            for i, v in enumerate(values)
            if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == chunk.rows
        ]
        if chunk.rows == 0:
            return torch.zeros(0, self.size, dtype=_dtype(chosen), device=_device(chosen))
        if self._loop_reason is None:
            try:
                grads = self._vectorised(chosen, constants, values, batched, loss_fn)
                return _flatten(grads, self.names, chunk.rows)
            except Exception as error:  # noqa: BLE001 - any tracing failure: use the loop
                self._loop_reason = f"{type(error).__name__}: {error}"
                warnings.warn(
                    f"{self.owner}: per-example gradients cannot be vectorised for this model "
                    f"({self._loop_reason}); falling back to one backward pass per example.",
                    stacklevel=3,
                )
        return self._looped(chosen, constants, values, batched, loss_fn, chunk.rows)

    def _loss(
        self,
        params: dict[str, Tensor],
        constants: dict[str, Tensor],
        values: Sequence[Any],
        loss_fn: Callable | None,
    ) -> Tensor:
        features, labels = tuple(values[:-1]), values[-1]
        output = functional_call(self.model, (params, constants), features)
        loss = output if loss_fn is None else loss_fn(output, labels)
        return loss.sum()

    def _vectorised(self, chosen, constants, values, batched, loss_fn) -> dict[str, Tensor]:
        def one(params: dict[str, Tensor], *rows: Tensor) -> Tensor:
            filled = list(values)
            for position, row in zip(batched, rows):
                filled[position] = row.unsqueeze(0)  # each example as a batch of one
            return self._loss(params, constants, filled, loss_fn)

        in_dims = (None,) + (0,) * len(batched)
        with torch.enable_grad():
            return vmap(grad(one), in_dims=in_dims, randomness="different")(
                chosen, *[values[i] for i in batched]
            )

    def _looped(self, chosen, constants, values, batched, loss_fn, rows: int) -> Tensor:
        out = []
        leaves = {n: p.clone().requires_grad_(True) for n, p in chosen.items()}
        with torch.enable_grad():
            for r in range(rows):
                filled = list(values)
                for position in batched:
                    filled[position] = values[position][r : r + 1]
                loss = self._loss(leaves, constants, filled, loss_fn)
                grads = torch.autograd.grad(
                    loss, [leaves[n] for n in self.names], allow_unused=True
                )
                out.append(
                    torch.cat(
                        [
                            (g if g is not None else torch.zeros_like(leaves[n])).reshape(-1)
                            for g, n in zip(grads, self.names)
                        ]
                    )
                )
        return torch.stack(out)


def _flatten(grads: dict[str, Tensor], names: Sequence[str], rows: int) -> Tensor:
    return torch.cat([grads[n].reshape(rows, -1) for n in names], dim=1)


def _dtype(params: dict[str, Tensor]) -> torch.dtype:
    return next(iter(params.values())).dtype


def _device(params: dict[str, Tensor]) -> torch.device:
    return next(iter(params.values())).device


class Factors:
    """Per-example gradients of some rows, kept factored where that is exact.

    For an ``nn.Linear`` layer fed ``(rows, d_in)`` inputs ``a`` whose outputs get the
    loss gradients ``d`` (``(rows, d_out)``), example ``i``'s weight gradient is
    ``d_i a_i^T`` and its bias gradient ``d_i``, so dot products of gradients factor:
    ``<d_i a_i^T, d_j a_j^T> = (d_i . d_j)(a_i . a_j)`` -- no ``P``-sized gradient is formed.
    The other parameters' gradients are kept flat, one block per parameter (``rest``; a
    ``Conv2d`` weight's block in ``(C_out, k_h, k_w, C_in)`` order, see
    :func:`_conv_gradients`: dot products do not depend on the order, :meth:`flat` restores
    the parameter's). Rows whose layers could not be factored are one flat block.

    Attributes
    ----------
    inputs, deltas : list of Tensor
        Per factored layer, ``(rows, d_in)`` and ``(rows, d_out)``.
    rest : list of Tensor
        ``(rows, p_b)`` gradient blocks: of the parameters ``layout.rest`` when
        ``structured``, else one block of all parameters in order.
    rows : int
    layout : _Layout
        Which parameters the factors and ``rest`` stand for.
    structured : bool
        Whether the rows are factored (``inputs``, ``deltas`` and per-parameter blocks).
    """

    def __init__(
        self,
        inputs: list[Tensor],
        deltas: list[Tensor],
        rest: list[Tensor],
        rows: int,
        layout: _Layout,
        *,
        structured: bool,
    ) -> None:
        self.inputs, self.deltas, self.rest, self.rows, self.layout = (
            inputs,
            deltas,
            rest,
            rows,
            layout,
        )
        self.structured = structured

    @classmethod
    def of_flat(cls, flat: Tensor, layout: _Layout) -> Factors:
        """Rows given as ``(rows, P)`` flat gradients in the parameters' order."""
        return cls([], [], [flat], flat.shape[0], layout, structured=False)

    @property
    def factored(self) -> bool:
        return self.structured

    @staticmethod
    def cat(parts: list[Factors]) -> Factors:
        """The rows of ``parts`` together (flat if any part is flat)."""
        layout = parts[0].layout
        if not all(p.factored for p in parts):
            return Factors.of_flat(torch.cat([p.flat() for p in parts]), layout)
        inputs = [torch.cat([p.inputs[k] for p in parts]) for k in range(len(parts[0].inputs))]
        deltas = [torch.cat([p.deltas[k] for p in parts]) for k in range(len(parts[0].deltas))]
        rest = [torch.cat([p.rest[b] for p in parts]) for b in range(len(parts[0].rest))]
        return Factors(inputs, deltas, rest, sum(p.rows for p in parts), layout, structured=True)

    def flat(self) -> Tensor:
        """``(rows, P)`` flat gradients in the parameters' order."""
        if not self.factored:
            return self.rest[0]
        pieces: dict[str, Tensor] = {}
        for k, (weight, bias) in enumerate(self.layout.linear):
            if weight is not None:
                pieces[weight] = (self.deltas[k][:, :, None] * self.inputs[k][:, None, :]).reshape(
                    self.rows, -1
                )
            if bias is not None:
                pieces[bias] = self.deltas[k]
        for name, block in zip(self.layout.rest, self.rest):
            pieces[name] = self.layout.restore(name, block)
        return torch.cat([pieces[n] for n in self.layout.names], dim=1)

    def dot(self, other: Factors) -> Tensor:
        """``(self.rows, other.rows)`` gradient dot products."""
        if not (self.factored and other.factored):
            return self.flat() @ other.flat().T
        total = None
        for k, (weight, bias) in enumerate(self.layout.linear):
            dd = self.deltas[k] @ other.deltas[k].T
            term = dd * (self.inputs[k] @ other.inputs[k].T) if weight is not None else None
            if bias is not None:
                term = dd if term is None else term + dd
            total = term if total is None else total + term
        for mine, theirs in zip(self.rest, other.rest):
            flat = mine @ theirs.T
            total = flat if total is None else total + flat
        assert total is not None
        return total

    def squared_norms(self) -> Tensor:
        """``(rows,)``: each example's ``||g||^2``."""
        total = None
        for k, (weight, bias) in enumerate(self.layout.linear if self.factored else []):
            dd = (self.deltas[k] ** 2).sum(dim=1)
            term = dd * (self.inputs[k] ** 2).sum(dim=1) if weight is not None else None
            if bias is not None:
                term = dd if term is None else term + dd
            total = term if total is None else total + term
        for block in self.rest:
            flat = (block * block).sum(dim=1)
            total = flat if total is None else total + flat
        assert total is not None
        return total


class _Layout:
    """The differentiated parameters (``names``, in order), the ``(weight, bias)`` names of
    each factored ``nn.Linear`` (``None`` when not differentiated), the rest, sizes, and the
    ``Conv2d`` weights whose blocks are stored ``(C_out, k_h, k_w, C_in)``."""

    def __init__(
        self,
        names: list[str],
        linear: list[tuple[str | None, str | None]],
        rest: list[str],
        sizes: dict[str, int],
        stored: dict[str, tuple[int, int, int, int]] | None = None,
    ) -> None:
        self.names, self.linear, self.rest, self.sizes = names, linear, rest, sizes
        self.stored = stored or {}

    def restore(self, name: str, block: Tensor) -> Tensor:
        """``block`` ``(rows, p)`` in the parameter's own element order."""
        if name not in self.stored:
            return block
        c_out, kh, kw, c_in = self.stored[name]
        rows = block.shape[0]
        return block.reshape(rows, c_out, kh, kw, c_in).permute(0, 1, 4, 2, 3).reshape(rows, -1)


class FactoredGradients:
    """Per-example gradients as :class:`Factors`: ``nn.Linear`` layers on 2-D inputs by one
    batched forward and backward (their inputs and output gradients captured with the
    engine's hooks), the other parameters by :class:`PerExampleGradients`.

    A layer that takes inputs with more than two dimensions, or runs more than once per
    forward, makes the chunk (and this object from then on) flat: exact either way.

    Parameters
    ----------
    model : nn.Module
    names : list of str
        The differentiated parameters.
    owner : str
    """

    def __init__(self, model: nn.Module, names: list[str], *, owner: str) -> None:
        self.model = model
        self.names = names
        self.owner = owner
        params = dict(model.named_parameters())
        name_of = {id(p): n for n, p in model.named_parameters()}
        chosen = set(names)
        taken: set[str] = set()

        def own(module: nn.Module) -> tuple[str | None, str | None]:
            weight = name_of.get(id(module.weight))
            bias = name_of.get(id(module.bias)) if module.bias is not None else None
            weight = weight if weight in chosen and weight not in taken else None
            bias = bias if bias in chosen and bias not in taken else None
            taken.update(n for n in (weight, bias) if n is not None)
            return weight, bias

        self.layers: list[nn.Module] = []
        linear: list[tuple[str | None, str | None]] = []
        #: Conv2d layers whose per-example gradients come from their captured inputs and
        #: output gradients (unfold: the hook trick Captum uses), in the same pass
        self.convs: list[tuple[nn.Conv2d, str | None, str | None]] = []
        for module in model.modules():
            if isinstance(module, nn.Linear):
                weight, bias = own(module)
                if weight is not None or bias is not None:
                    self.layers.append(module)
                    linear.append((weight, bias))
            elif (
                isinstance(module, nn.Conv2d)
                and module.groups == 1
                and module.padding_mode == "zeros"
                and not isinstance(module.padding, str)
            ):
                weight, bias = own(module)
                if weight is not None or bias is not None:
                    self.convs.append((module, weight, bias))
        rest = [n for n in names if n not in taken or any(n in (w, b) for _, w, b in self.convs)]
        traced = [n for n in names if n not in taken]
        stored = {
            w: (conv.out_channels, *conv.kernel_size, conv.in_channels)  # type: ignore[misc]
            for conv, w, _ in self.convs
            if w is not None and not _grouped(conv)
        }
        self.layout = _Layout(names, linear, rest, {n: params[n].numel() for n in names}, stored)
        self.rest = PerExampleGradients(model, traced, owner=owner) if traced else None
        self.flat = PerExampleGradients(model, names, owner=owner)
        self.factoring = bool(self.layers or self.convs)
        #: conv models run channels-last on CPU (faster, same values)
        self._layout = ChannelsLast(model)

    def row_bytes(self) -> int:
        return self.flat.row_bytes()

    def __call__(self, chunk: Chunk, loss_fn: Callable | None) -> Factors:
        if self.factoring:
            found = self._layout.run(
                lambda features: self._factored(chunk, features, loss_fn), chunk.features
            )
            if found is not None:
                return found
            self.factoring = False  # this model's layers do not factor: flat from now on
        return Factors.of_flat(self.flat(chunk, loss_fn), self.layout)

    def _factored(
        self, chunk: Chunk, features: tuple[Any, ...], loss_fn: Callable | None
    ) -> Factors | None:
        """The chunk's factors from one forward of ``features`` (the chunk's features,
        maybe channels-last) and one backward to the hooked layers' outputs."""
        everything = dict(self.model.named_parameters())
        leaves = {n: everything[n].detach().requires_grad_(True) for n in self.names}
        constants = {n: p.detach() for n, p in everything.items() if n not in leaves}
        constants.update(dict(self.model.named_buffers()))
        hooked = self.layers + [conv for conv, _, _ in self.convs]
        with torch.enable_grad():
            with capture(hooked, inputs=True) as ins, capture(hooked) as outs:
                output = functional_call(self.model, (leaves, constants), features)
            if ins.calls != len(hooked) or outs.calls != len(hooked):
                return None  # a layer ran more (or less) than once
            inputs = [t[0] if t else None for t in ins.per_layer]
            outputs = [t[0] if t else None for t in outs.per_layer]
            wanted = [2] * len(self.layers) + [4] * len(self.convs)
            if any(
                a is None or o is None or a.dim() != dims
                for a, o, dims in zip(inputs, outputs, wanted)
            ):
                return None  # e.g. a linear layer on (N, T, d) inputs: no factoring
            loss = output if loss_fn is None else loss_fn(output, chunk.labels)
            # the examples' losses summed: each example's output gradient is its own
            scale = chunk.rows if getattr(loss_fn, "reduction", None) == "mean" else 1
            deltas = torch.autograd.grad(loss.sum() * scale, outputs, allow_unused=True)
        deltas = [torch.zeros_like(o) if d is None else d for d, o in zip(deltas, outputs)]
        pieces: dict[str, Tensor] = {}
        n_linear = len(self.layers)
        for (conv, weight, bias), x, d in zip(self.convs, inputs[n_linear:], deltas[n_linear:]):
            pieces.update(_conv_gradients(conv, weight, bias, x.detach(), d))
        if self.rest is not None:
            traced = self.rest(chunk, loss_fn)
            sizes = [self.layout.sizes[n] for n in self.rest.names]
            pieces.update(zip(self.rest.names, torch.split(traced, sizes, dim=1)))
        return Factors(
            [a.detach() for a in inputs[:n_linear]],
            list(deltas[:n_linear]),
            [pieces[n] for n in self.layout.rest],
            chunk.rows,
            self.layout,
            structured=True,
        )


#: bytes of image patches held at once by :func:`_conv_gradients` (rows are sub-chunked)
_PATCH_BYTES = 64 * 2**20
#: input channels from which a layer's per-example gradients come from a grouped
#: convolution's weight gradient (fewer: patches and a batched matmul, faster there;
#: measured on CPU, 3 vs 16 and 32 channels)
_GROUPED_MIN_CHANNELS = 8


def _grouped(conv: nn.Conv2d) -> bool:
    return conv.in_channels >= _GROUPED_MIN_CHANNELS


def _grouped_weight_gradients(conv: nn.Conv2d, x: Tensor, d: Tensor) -> Tensor:
    """``(rows, C_out C_in k_h k_w)``: the weight gradient of the chunk seen as one example
    of a convolution with ``rows`` groups (``x`` as ``(1, rows C_in, H, W)``, ``d`` as ``(1,
    rows C_out, H', W')``), which is each example's weight gradient, stacked."""
    rows, c_in = x.shape[0], x.shape[1]
    c_out = d.shape[1]
    inputs = x.contiguous().view(1, rows * c_in, *x.shape[2:])
    grads = d.contiguous().view(1, rows * c_out, *d.shape[2:])
    # only the weight's shape matters: its gradient does not depend on its values
    weight = x.new_empty(rows * c_out, c_in, *conv.kernel_size)
    _, result, _ = torch.ops.aten.convolution_backward(
        grads,
        inputs,
        weight,
        None,
        list(conv.stride),
        list(conv.padding),  # type: ignore[arg-type]  # str padding is not factored
        list(conv.dilation),
        False,
        [0, 0],
        rows,
        [False, True, False],
    )
    return result.reshape(rows, -1)


def _conv_gradients(
    conv: nn.Conv2d, weight: str | None, bias: str | None, x: Tensor, d: Tensor
) -> dict[str, Tensor]:
    """Per-example ``Conv2d`` gradients ``(rows, numel)`` from its input ``x`` ``(rows,
    C_in, H, W)`` and output gradient ``d`` ``(rows, C_out, H', W')``.

    Example ``n``'s weight gradient is ``d_n (C_out, L) @ P_n (L, k_h k_w C_in)`` with
    ``P_n`` its image patches (``L = H' W'`` positions), one batched matmul. The patches
    are a strided view of the zero-padded input taken channels-last (``(n, h', w', i, j,
    c)``, the layout conv models run in on CPU, see :mod:`._layout`), copied in sub-chunks
    of at most :data:`_PATCH_BYTES`. The weight's gradient is left in ``(C_out, k_h, k_w,
    C_in)`` order (:meth:`_Layout.restore` gives the weight's own).

    A layer with at least :data:`_GROUPED_MIN_CHANNELS` input channels is instead
    differentiated as one grouped convolution over the chunk (example ``n`` the group
    ``n``, its weight gradient the group's: the backend's weight-gradient kernel, faster
    there), in the weight's own order.
    """
    rows = x.shape[0]
    out: dict[str, Tensor] = {}
    c_out = d.shape[1]
    # (rows, L, C_out): a view when d is channels-last
    flat_d = d.permute(0, 2, 3, 1).reshape(rows, -1, c_out)
    if weight is not None and _grouped(conv):
        out[weight] = _grouped_weight_gradients(conv, x, d)
    elif weight is not None:
        (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
        ph, pw = conv.padding  # type: ignore[misc]  # str padding is not factored
        c_in = x.shape[1]
        # (rows, H + 2 p_h, W + 2 p_w, C_in), one copy (x.permute is a view when x is
        # channels-last)
        padded = torch.nn.functional.pad(x.permute(0, 2, 3, 1), (0, 0, pw, pw, ph, ph))
        padded = padded.contiguous()
        s_n, s_h, s_w, s_c = padded.stride()
        ho, wo = d.shape[2], d.shape[3]
        row_bytes = ho * wo * kh * kw * c_in * x.element_size()
        step = max(1, _PATCH_BYTES // max(row_bytes, 1))
        parts = []
        for start in range(0, rows, step):
            stop = min(rows, start + step)
            patches = padded[start:stop].as_strided(
                (stop - start, ho, wo, kh, kw, c_in),
                (s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c),
            )
            patches = patches.reshape(stop - start, ho * wo, kh * kw * c_in)
            parts.append(torch.bmm(flat_d[start:stop].transpose(1, 2), patches))
        grads = torch.cat(parts) if len(parts) > 1 else parts[0]
        out[weight] = grads.reshape(rows, -1)  # (C_out, k_h, k_w, C_in) order
    if bias is not None:
        out[bias] = flat_d.sum(dim=1)
    return out
