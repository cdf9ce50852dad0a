"""TCAV: Testing with Concept Activation Vectors (Kim et al., 2018), Captum's ``TCAV``.

For a layer and an experimental set of concepts, a linear classifier trained on the
layer's activations of the concepts' examples gives one CAV per concept (its weight row).
The TCAV scores of inputs are the shares of inputs whose layer sensitivity (by default the
gradient of the target with respect to the layer) has a positive dot product with each
CAV (``sign_count``), and the mean dot product (``magnitude``).

Activations are gathered with the engine's checked, chunked layer capture (one forward per
concept batch for all layers); CAVs and activations are cached on disk at Captum's paths.
"""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from typing import Any, cast

import torch
from torch import Tensor
from torch.nn import Module
from torch.utils.data import DataLoader, Dataset

from whybox.attr import LayerGradientXActivation
from whybox.attr._assertion_errors import fail_assert as fail
from whybox.core.call import prepare_call
from whybox.core.chunks import ChunkSize
from whybox.core.scope import LayerSite

from . import _store
from .cav import CAV
from .classifier import Classifier, DefaultClassifier
from .concepts import Concept, ConceptInterpreter, concepts_to_str

__all__ = ["TCAV", "LabelledDataset", "train_cav"]

_OWNER = "TCAV"


class LabelledDataset(Dataset):
    """Batches of activations of several concepts, each with its concept's label.

    Item ``i`` runs through the concepts' batches in order (all batches of concept 0, then
    of concept 1, ...): ``(activations (B, F), labels (B,))`` with every label the batch's
    concept's.

    Parameters
    ----------
    datasets : list of Dataset
        ``datasets[k][j]`` is batch ``j`` of concept ``k``, a ``(B, F)`` tensor.
    labels : list of int
        ``labels[k]`` is concept ``k``'s label (its id).
    """

    def __init__(self, datasets: list[Any], labels: list[int]) -> None:
        if len(datasets) != len(labels):
            fail("LabelledDataset", "labels", f"one label per dataset ({len(datasets)})", labels)
        self.datasets = datasets
        self.labels = labels
        self.uppers: list[int] = list(itertools.accumulate(len(d) for d in datasets))
        self.lowers: list[int] = [0] + self.uppers[:-1]
        self.length: int = self.uppers[-1] if self.uppers else 0

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if not 0 <= i < self.length:
            raise IndexError(f"LabelledDataset index {i} out of range ({self.length} batches)")
        k = bisect.bisect_right(self.uppers, i)
        inputs = self.datasets[k][i - self.lowers[k]]
        labels = torch.full((inputs.shape[0],), self.labels[k], device=inputs.device)
        return inputs, labels

    def __len__(self) -> int:
        return self.length


def _collate(batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    inputs, labels = zip(*batch)
    return torch.cat(inputs), torch.cat(labels)


def train_cav(
    model_id: str,
    concepts: list[Concept],
    layers: str | list[str],
    classifier: Classifier,
    save_path: str,
    classifier_kwargs: dict[str, Any],
) -> dict[str, dict[str, CAV | None]]:
    """Train (and save) the CAVs of one experimental set in each of ``layers``.

    The concepts' activations are read from ``save_path`` (written by
    :meth:`TCAV.generate_activation`, or by Captum).

    Parameters
    ----------
    model_id : str
    concepts : list of Concept
        The experimental set; each concept's id is its label.
    layers : str or list of str
    classifier : Classifier
        Trained once per layer; its ``weights()`` rows are the CAVs.
    save_path : str
    classifier_kwargs : dict
        Passed to ``classifier.train_and_eval``.

    Returns
    -------
    dict
        ``{concepts key: {layer: CAV}}``; each CAV's ``stats`` holds ``weights`` (C, F),
        ``classes`` (the concept id of each row) and the classifier's statistics.
    """
    key = concepts_to_str(concepts)
    cavs: dict[str, dict[str, CAV | None]] = {key: {}}
    for layer in [layers] if isinstance(layers, str) else layers:
        datasets = []
        for concept in concepts:
            files = _store.batch_files(save_path, model_id, concept.identifier, layer)
            if not files:
                fail(
                    "train_cav",
                    "concepts",
                    f"concepts whose activations in layer {layer!r} are stored under "
                    f"{save_path!r} (run TCAV.generate_activation first)",
                    f"none for concept {concept!r}",
                    raw=True,
                )
            datasets.append(_store.ActivationBatches(files))
        labelled = LabelledDataset(datasets, [c.id for c in concepts])
        stats = classifier.train_and_eval(
            DataLoader(labelled, collate_fn=_collate), **classifier_kwargs
        )
        weights = classifier.weights()
        if weights is None or len(weights) == 0:
            fail("train_cav", "classifier", "a classifier with non-empty weights()", weights)
        classes = classifier.classes()
        if classes is None or len(classes) == 0:
            fail("train_cav", "classifier", "a classifier with non-empty classes()", classes)
        if isinstance(classes, Tensor):
            classes = classes.detach().cpu().numpy()
        cav = CAV(
            concepts,
            layer,
            {"weights": weights, "classes": classes, **(stats or {})},
            save_path,
            model_id,
        )
        cav.save()
        cavs[key][layer] = cav
    return cavs


class TCAV(ConceptInterpreter):
    """Concept sensitivity of a model's predictions, layer by layer (Captum's ``TCAV``).

    Parameters
    ----------
    model : torch.nn.Module
    layers : str or list of str
        Names of the layers (``model.get_submodule`` paths, ``"block.conv"``).
    model_id : str, default ``"default_model_id"``
        The model's folder in the cache; must be non-empty.
    classifier : Classifier, optional
        The concept classifier (default :class:`DefaultClassifier`).
    layer_attr_method : LayerAttribution, optional
        The layer sensitivities (a ``whybox.attr`` layer method, whose ``layer`` is set to
        each layer in turn). Default: the gradient with respect to the layer
        (``LayerGradientXActivation(model, None, multiply_by_inputs=False)``), computed for
        all layers in one backward pass.
    attribute_to_layer_input : bool, default False
        Use the layers' inputs instead of their outputs (activations and sensitivities).
    save_path : str, default ``"./cav/"``
        Root of the on-disk cache of CAVs and activations.
    chunk_size : int, ``"auto"`` or None, keyword-only
        Rows per forward when gathering concept activations.
    **classifier_kwargs
        Passed to the classifier's ``train_and_eval`` (``test_split_ratio=...``).

    Notes
    -----
    A CAV found on disk for an experimental set and layer is loaded, not retrained (as in
    Captum); pass ``force_train=True`` to :meth:`compute_cavs`, or a fresh ``model_id``,
    after changing the model or the concepts' examples. ``processes`` is accepted and
    CAVs are trained in this process (a torch fit takes milliseconds).
    """

    def __init__(
        self,
        model: Module,
        layers: str | list[str],
        model_id: str = "default_model_id",
        classifier: Classifier | None = None,
        layer_attr_method: Any = None,
        attribute_to_layer_input: bool = False,
        save_path: str = "./cav/",
        *,
        chunk_size: ChunkSize = "auto",
        **classifier_kwargs: Any,
    ) -> None:
        ConceptInterpreter.__init__(self, model)
        self.layers: list[str] = [layers] if isinstance(layers, str) else list(layers)
        if not self.layers or not all(isinstance(layer, str) for layer in self.layers):
            fail(_OWNER, "layers", "a layer name or a non-empty list of layer names", layers)
        for layer in self.layers:
            self._module(layer)
        if not isinstance(model_id, str) or not model_id:
            fail(_OWNER, "model_id", "a non-empty string (a folder name)", model_id)
        self.model_id = model_id
        self.concepts: set[Concept] = set()
        self.classifier = classifier if classifier is not None else DefaultClassifier()
        self.classifier_kwargs: Any = classifier_kwargs
        self.cavs: dict[str, dict[str, CAV]] = defaultdict(lambda: defaultdict())
        self._default_method = layer_attr_method is None
        if layer_attr_method is None:
            layer_attr_method = LayerGradientXActivation(model, None, multiply_by_inputs=False)
        self.layer_attr_method = layer_attr_method
        self.attribute_to_layer_input: bool = attribute_to_layer_input
        self.save_path = save_path
        self.chunk_size = chunk_size
        #: (concept id, layer) pairs whose activations this instance has written
        self._activated: set[tuple[int, str]] = set()
        CAV.create_cav_dir_if_missing(self.save_path, model_id)

    def _module(self, layer: str) -> Module:
        try:
            return self.model.get_submodule(layer)
        except AttributeError:
            fail(_OWNER, "layers", "names of submodules of the model", layer)
            raise AssertionError from None  # unreachable

    # -- activations ---------------------------------------------------------------------
    def generate_all_activations(self) -> None:
        """Compute and store the activations of every known concept in every layer."""
        for concept in self.concepts:
            self.generate_activation(self.layers, concept)

    def generate_activation(self, layers: str | list[str], concept: Concept) -> None:
        """Compute and store ``concept``'s activations in ``layers``.

        One forward per batch of ``concept.data_iter`` (in chunks of ``chunk_size`` rows)
        captures every layer; each layer's values are flattened to ``(B, F)`` (a layer
        giving several tensors: concatenated).

        Parameters
        ----------
        layers : str or list of str
        concept : Concept
        """
        layers = [layers] if isinstance(layers, str) else list(layers)
        if concept.data_iter is None:
            fail(_OWNER, "concept", "a Concept with a data_iter", concept)
        site = LayerSite.of(
            [self._module(layer) for layer in layers],
            to_input=self.attribute_to_layer_input,
            owner=_OWNER,
        )
        for layer in layers:
            _store.clear(self.save_path, self.model_id, concept.identifier, layer)
        for number, examples in enumerate(cast(Any, concept.data_iter)):
            if isinstance(examples, list):
                examples = tuple(examples)
            call = prepare_call(
                _OWNER, self.model, examples, chunk_size=self.chunk_size, require_float=False
            )
            values, layout = site.activations(call)
            start = 0
            for layer, count in zip(layers, layout):
                parts = values[start : start + count]
                start += count
                flat = torch.cat([p.reshape(p.shape[0], -1) for p in parts], dim=1)
                _store.save_batch(
                    self.save_path, self.model_id, concept.identifier, layer, flat, number
                )
        self._activated.update((concept.id, layer) for layer in layers)

    def generate_activations(self, concept_layers: dict[Concept, list[str]]) -> None:
        """:meth:`generate_activation` for each concept and its layers.

        Parameters
        ----------
        concept_layers : dict
            ``{concept: [layer names]}``.
        """
        for concept, layers in concept_layers.items():
            self.generate_activation(layers, concept)

    # -- CAVs ------------------------------------------------------------------------------
    def load_cavs(self, concepts: list[Concept]) -> tuple[list[str], dict[Concept, list[str]]]:
        """Load the cached CAVs of an experimental set; say what still needs computing.

        Parameters
        ----------
        concepts : list of Concept

        Returns
        -------
        (list of str, dict)
            The layers whose CAVs must be trained, and ``{concept: [layers]}`` whose
            activations must be computed first (those this instance has not computed).
        """
        key = concepts_to_str(concepts)
        layers: list[str] = []
        concept_layers: dict[Concept, list[str]] = defaultdict(list)
        for layer in self.layers:
            cav = CAV.load(self.save_path, self.model_id, concepts, layer)
            if cav is not None:
                self.cavs[key][layer] = cav
            if key not in self.cavs or layer not in self.cavs[key] or not self.cavs[key][layer]:
                layers.append(layer)
                for concept in concepts:
                    if (concept.id, layer) not in self._activated:
                        concept_layers[concept].append(layer)
        return layers, concept_layers

    def compute_cavs(
        self,
        experimental_sets: list[list[Concept]],
        force_train: bool = False,
        processes: int | None = None,
    ) -> dict[str, dict[str, CAV]]:
        """Load or train the CAVs of every experimental set in every layer.

        Parameters
        ----------
        experimental_sets : list of list of Concept
            Concepts with the same id must be the same object.
        force_train : bool, default False
            Recompute activations and retrain even when CAVs are cached.
        processes : int, optional
            Accepted for Captum compatibility; training runs in this process.

        Returns
        -------
        dict
            ``self.cavs``: ``{concepts key: {layer: CAV}}``.
        """
        for concepts in experimental_sets:
            self.concepts.update(concepts)
        seen: dict[int, Concept] = {}
        for concept in self.concepts:
            if concept.id in seen:
                fail(
                    _OWNER,
                    "experimental_sets",
                    "one Concept object per concept id (reuse the same instance)",
                    f"two concepts with id {concept.id}: {seen[concept.id]!r} and {concept!r}",
                    raw=True,
                )
            seen[concept.id] = concept
        if force_train:
            self.generate_all_activations()
        to_train: dict[str, list[str]] = {}
        for concepts in experimental_sets:
            key = concepts_to_str(concepts)
            if force_train:
                to_train[key] = list(self.layers)
            else:
                layers, concept_layers = self.load_cavs(concepts)
                to_train[key] = layers
                self.generate_activations(concept_layers)
        for concepts in experimental_sets:
            trained = train_cav(
                self.model_id,
                concepts,
                to_train[concepts_to_str(concepts)],
                self.classifier,
                self.save_path,
                self.classifier_kwargs,
            )
            for key, per_layer in trained.items():
                self.cavs[key].update(per_layer)  # type: ignore[arg-type]
        return self.cavs

    # -- scores ----------------------------------------------------------------------------
    def interpret(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        experimental_sets: list[list[Concept]],
        target: Any = None,
        additional_forward_args: Any = None,
        processes: int | None = None,
        **kwargs: Any,
    ) -> dict[str, dict[str, dict[str, Tensor]]]:
        """TCAV scores of ``inputs`` for each experimental set and layer.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor, each ``(N, ...)``
        experimental_sets : list of list of Concept
        target : int, tuple, Tensor or list, optional
            The output explained (Captum's target forms).
        additional_forward_args : optional
            Extra model arguments.
        processes : int, optional
            See :meth:`compute_cavs`.
        **kwargs
            Passed to the layer method's ``attribute`` (``n_steps=...``); not
            ``attribute_to_layer_input`` (a constructor argument).

        Returns
        -------
        dict
            ``{concepts key: {layer: {"sign_count": Tensor (C,), "magnitude": Tensor
            (C,)}}}``, float32, in the order of each set's concepts. ``sign_count`` is the
            share of inputs whose sensitivity has a positive dot product with the CAV,
            ``magnitude`` the mean dot product.
        """
        if "attribute_to_layer_input" in kwargs:
            fail(
                _OWNER,
                "attribute_to_layer_input",
                "given to the TCAV constructor (it applies to activations and "
                "sensitivities alike), not to interpret",
                kwargs["attribute_to_layer_input"],
            )
        self.compute_cavs(experimental_sets, processes=processes)
        scores: dict[str, dict[str, dict[str, Tensor]]] = defaultdict(lambda: defaultdict())
        # Captum's order: sets by length (stable), so the result dict iterates the same way
        order = sorted(range(len(experimental_sets)), key=lambda i: len(experimental_sets[i]))
        per_layer = self._sensitivities(inputs, target, additional_forward_args, kwargs)
        for layer, sensitivities in zip(self.layers, per_layer):
            for i in order:
                concepts = experimental_sets[i]
                key = concepts_to_str(concepts)
                stats = cast(dict[str, Any], self.cavs[key][layer].stats)
                cavs = stats["weights"].detach().float().to(sensitivities.device)
                dots = sensitivities @ cavs.T  # (N, C)
                row = {int(c): r for r, c in enumerate(_as_list(stats["classes"]))}
                index = torch.tensor([row[c.id] for c in concepts], device=dots.device)
                scores[key][layer] = {
                    "sign_count": (dots > 0.0).float().mean(dim=0).index_select(0, index),
                    "magnitude": dots.mean(dim=0).index_select(0, index),
                }
        return scores

    def _sensitivities(
        self, inputs: Any, target: Any, forward_args: Any, kwargs: dict[str, Any]
    ) -> list[Tensor]:
        """The layer method's attributions of ``inputs``, per layer, flattened ``(N, F)``."""
        method = self.layer_attr_method
        modules = [self._module(layer) for layer in self.layers]
        options = dict(
            target=target,
            additional_forward_args=forward_args,
            attribute_to_layer_input=self.attribute_to_layer_input,
            **kwargs,
        )
        if self._default_method:
            # gradients with respect to every layer come from one backward pass
            method.layer = modules
            attributions = list(method.attribute(inputs, **options))
        else:
            attributions = []
            for module in modules:
                method.layer = module
                attributions.append(method.attribute(inputs, **options))
        method.layer = modules[-1]
        out = []
        for values in attributions:
            parts = values if isinstance(values, (tuple, list)) else (values,)
            out.append(torch.cat([p.reshape(p.shape[0], -1) for p in parts], dim=1).float())
        return out


def _as_list(classes: Any) -> list[Any]:
    return classes.tolist() if hasattr(classes, "tolist") else list(classes)
