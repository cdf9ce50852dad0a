"""Alias of Captum 0.9's ``captum.concept._utils.data_iterator``: its public names, as whybox objects."""

from whybox.concept.data import CustomIterableDataset, dataset_to_dataloader

__all__ = ["CustomIterableDataset", "dataset_to_dataloader"]
