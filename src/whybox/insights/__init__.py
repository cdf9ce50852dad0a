"""Captum Insights' names on whybox's web app: ``from whybox.insights import
AttributionVisualizer, Batch`` replaces ``from captum.insights import ...``.

The visualizer serves :mod:`whybox.app` (FastAPI + uvicorn, 127.0.0.1 by default) over the
given models, classes, features and dataset; see
:class:`~whybox.insights.attr_vis.app.AttributionVisualizer`.
"""

from whybox.insights.attr_vis.app import AttributionVisualizer, Batch

__all__ = ["AttributionVisualizer", "Batch"]
