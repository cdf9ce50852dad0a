"""Captum 0.9's ``captum.log`` at the same path; whybox logs nothing (see ``dummy_log``)."""

from whybox.log.dummy_log import (
    TimedLog,
    disable_detailed_logging,
    log,
    log_usage,
    patch_methods,
    set_environment,
)

__all__ = [
    "log",
    "log_usage",
    "TimedLog",
    "set_environment",
    "disable_detailed_logging",
    "patch_methods",
]
