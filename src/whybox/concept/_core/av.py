"""``AV`` at ``concept._core.av``, the path some Captum versions' tests import it from;
whybox's object is :class:`whybox.concept._av.AV`."""

from whybox.concept._av import AV

__all__ = ["AV"]
