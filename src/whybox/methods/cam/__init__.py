"""The CAM family beyond Captum: what pytorch-grad-cam users rely on, on the shared engine.

One idea per module:

* :mod:`.base`: the pipeline every CAM shares (layer values from one chunked pass, reshape,
  ``relu(sum_c w_c A_c)``, upsampling); a CAM writes only its weights, as in
  pytorch-grad-cam;
* :mod:`.gradient`: Grad-CAM, Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM;
* :mod:`.perturbation`: Score-CAM and Ablation-CAM (batched perturbed forwards);
* :mod:`.eigen`: Eigen-CAM (gradient- and target-free);
* :mod:`.targets` / :mod:`.reshape`: pytorch-grad-cam's target callables and the ViT
  reshape transform.

Targets are everything :mod:`whybox.core.targets` accepts, including a callable
``f(output) -> (N,)`` and, as in pytorch-grad-cam, a list of one callable per image such as
``[ClassifierOutputTarget(281), ClassifierOutputTarget(7)]``.
"""

from .eigen import EigenCam
from .gradient import GradCamPlusPlus, HiResCam, LayerCam, UpsampledGradCam, XGradCam
from .perturbation import AblationCam, ScoreCam
from .reshape import vit_reshape_transform
from .targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

__all__ = [
    "UpsampledGradCam",
    "GradCamPlusPlus",
    "XGradCam",
    "HiResCam",
    "LayerCam",
    "ScoreCam",
    "AblationCam",
    "EigenCam",
    "vit_reshape_transform",
    "ClassifierOutputTarget",
    "ClassifierOutputSoftmaxTarget",
]
