"""Robustness: adversarial attacks and robustness metrics (Captum 0.9's ``captum.robust``).

* :class:`FGSM` and :class:`PGD`: gradient attacks, batched over examples, targeted or
  untargeted, clamped to a box, ``Linf`` / ``L2`` balls, masks; gradients through the
  engine (chunked, inputs never modified); PGD's random start takes ``seed=``;
* :class:`AttackComparator`: a metric under several attacks, averaged over batches;
* :class:`MinParamPerturbation`: the smallest attack parameter that makes the model wrong;
* :class:`Perturbation`: their base class.

Captum's module paths work too (``whybox.robust._core.fgsm``,
``whybox.robust._core.metrics.attack_comparator``, ...): alias modules re-export these.
"""

from ._comparator import AttackComparator
from ._fgsm import FGSM
from ._min_param import MinParamPerturbation
from ._perturbation import Perturbation
from ._pgd import PGD

__all__ = ["FGSM", "AttackComparator", "MinParamPerturbation", "Perturbation", "PGD"]
