"""Captum's ``captum.insights.attr_vis`` namespace: the visualizer, batches and features."""

from whybox.insights.attr_vis.app import AttributionVisualizer, Batch

__all__ = ["AttributionVisualizer", "Batch"]
