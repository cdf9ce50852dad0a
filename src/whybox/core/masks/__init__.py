"""Feature masks, sliding windows, superpixels and coalitions.

Shared by every perturbation method (feature ablation, occlusion, Shapley sampling,
LIME, KernelSHAP). One idea per module:

* :mod:`~whybox.core.masks.windows` -- Occlusion's sliding windows;
* :mod:`~whybox.core.masks.segmentation` -- superpixels, grid cells, contiguous ids;
* :mod:`~whybox.core.masks.feature_masks` -- feature-mask validation, counts, groups and
  the expansion of coalitions to element-wise keep-masks;
* :mod:`~whybox.core.masks.coalitions` -- coalition enumeration, random orderings, the
  Shapley kernel and KernelSHAP's coalition design.

Conventions:

* A *feature mask* is an integer tensor (or a tuple of them, one per input) whose
  values are feature ids ``0..M-1`` and which broadcasts to its input
  (``(batch or 1, ...)``).
* A *coalition* is a boolean row of length ``M``: ``True`` keeps the feature's
  original value, ``False`` replaces it with the baseline.
"""

from .coalitions import (
    Coalitions,
    enumerate_coalitions,
    kernel_shap_coalitions,
    sample_permutations,
    shapley_kernel_weight,
)
from .feature_masks import (
    coalitions_to_input_masks,
    num_features,
    validate_feature_mask,
)
from .segmentation import grid_superpixels, relabel_contiguous, superpixels
from .windows import SlidingWindows, sliding_window_masks

__all__ = [
    "SlidingWindows",
    "sliding_window_masks",
    "relabel_contiguous",
    "grid_superpixels",
    "superpixels",
    "validate_feature_mask",
    "num_features",
    "coalitions_to_input_masks",
    "enumerate_coalitions",
    "sample_permutations",
    "shapley_kernel_weight",
    "Coalitions",
    "kernel_shap_coalitions",
]
