"""Alias of Captum 0.9's ``captum.influence._core.tracincp``: its public names, as whybox objects."""

from whybox.influence.tracin import TracInCP, TracInCPBase

__all__ = ["TracInCP", "TracInCPBase"]
