"""Image helpers for perturbation methods (LIME, KernelSHAP, ablation on superpixels).

* :func:`superpixels` -- SLIC / quickshift segments (scikit-image, extra ``whybox[image]``)
  or a plain grid when no segmentation is at hand;
* :func:`grid_superpixels` -- square cells, no extra dependency;
* :func:`relabel_contiguous` -- turn arbitrary segment ids (e.g. VOC class ids 0, 15, 255)
  into the contiguous ``0..K-1`` feature ids that ``feature_mask`` expects.
"""

from whybox.core.masks import grid_superpixels, relabel_contiguous, superpixels

__all__ = ["superpixels", "grid_superpixels", "relabel_contiguous"]
