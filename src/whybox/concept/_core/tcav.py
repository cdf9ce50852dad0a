"""Alias of Captum 0.9's ``captum.concept._core.tcav``: its public names, as whybox objects."""

from whybox.concept.tcav import TCAV, LabelledDataset, train_cav

__all__ = ["LabelledDataset", "TCAV", "train_cav"]
