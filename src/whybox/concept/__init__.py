"""Concept-based interpretability: TCAV (Captum 0.9's ``captum.concept``).

Captum's names with Captum's signatures and return conventions: :class:`Concept`,
:class:`ConceptInterpreter`, :class:`CAV`, :class:`TCAV`, :class:`Classifier`,
:class:`DefaultClassifier` (a linear SVM fitted exactly in torch). Captum's module paths
work too (``whybox.concept._utils.common.concepts_to_str``,
``whybox.concept._utils.data_iterator.dataset_to_dataloader`` /
``CustomIterableDataset``, ``whybox.concept._core.tcav.TCAV``, ...).

Native additions: keyword-only ``chunk_size`` on :class:`TCAV`, ``alpha`` / ``seed`` on
:class:`DefaultClassifier`, and the tutorials' statistical test
(:func:`random_experimental_sets`, :func:`assemble_scores`, :func:`significance`,
:func:`ttest_ind`).
"""

from ._linear import fit_linear_svm, sgd_linear_svm
from .cav import CAV
from .classifier import Classifier, DefaultClassifier
from .concepts import Concept, ConceptInterpreter, concepts_to_str
from .data import CustomIterableDataset, dataset_to_dataloader
from .significance import (
    Significance,
    assemble_scores,
    random_experimental_sets,
    significance,
    ttest_ind,
)
from .tcav import TCAV, LabelledDataset, train_cav

__all__ = [
    "CAV",
    "Concept",
    "ConceptInterpreter",
    "TCAV",
    "Classifier",
    "DefaultClassifier",
    "LabelledDataset",
    "train_cav",
    "fit_linear_svm",
    "sgd_linear_svm",
    "concepts_to_str",
    "CustomIterableDataset",
    "dataset_to_dataloader",
    "Significance",
    "assemble_scores",
    "random_experimental_sets",
    "significance",
    "ttest_ind",
]
