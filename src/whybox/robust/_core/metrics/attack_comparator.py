"""Alias of Captum 0.9's ``captum.robust._core.metrics.attack_comparator``: its public names, as whybox objects (no logic here)."""

from whybox.robust._comparator import (
    ORIGINAL_KEY,
    AttackComparator,
    AttackInfo,
    MetricResultType,
    agg_metric,
)

__all__ = ["ORIGINAL_KEY", "MetricResultType", "AttackInfo", "agg_metric", "AttackComparator"]
