"""``whybox.log`` at Captum 0.9's ``captum.log`` path: the same names, no-op behaviour.

Captum's test base (``captum.testing.helpers.basic.BaseTest``) calls ``patch_methods`` and
Captum-style code decorates functions with ``@log_usage()``; after the rename both must run
and change nothing.
"""

from __future__ import annotations

import asyncio
import inspect

import pytest

import whybox.log
import whybox.log.dummy_log as dummy

captum_log = pytest.importorskip("captum.log")


def test_same_public_names_as_captum():
    assert set(whybox.log.__all__) == set(captum_log.__all__)
    for name in captum_log.__all__:
        assert hasattr(whybox.log, name), name


def test_log_usage_keeps_behaviour_name_and_signature():
    def scaled(x: float, *, factor: float = 2.0) -> float:
        """Multiply."""
        return x * factor

    wrapped = whybox.log.log_usage(part_of_slo=True)(scaled)
    assert wrapped(3.0, factor=4.0) == 12.0
    assert wrapped.__name__ == "scaled" and wrapped.__doc__ == "Multiply."
    assert inspect.signature(wrapped) == inspect.signature(scaled)
    assert wrapped.__wrapped__ is scaled


def test_log_usage_keeps_a_coroutine_a_coroutine():
    async def answer() -> int:
        return 42

    wrapped = whybox.log.log_usage()(answer)
    assert inspect.iscoroutinefunction(wrapped)
    assert asyncio.run(wrapped()) == 42


def test_log_usage_lets_exceptions_through():
    @whybox.log.log_usage()
    def fails() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        fails()


@pytest.mark.parametrize("module", [whybox.log, captum_log], ids=["whybox", "captum"])
def test_timed_log_suppresses_like_captum(module):
    # Captum's dummy TimedLog.__exit__ returns True on an exception (it is swallowed)
    with module.TimedLog("step"):
        raise ValueError("swallowed")
    with module.TimedLog() as timer:
        pass
    assert isinstance(timer, module.TimedLog)


def test_the_other_hooks_accept_captum_arguments_and_return_none():
    assert dummy.log("event", key=1) is None
    assert dummy.set_environment(None) is None
    assert dummy.set_environment(["a", "b"]) is None
    assert dummy.disable_detailed_logging() is None
    assert dummy.patch_methods(object(), patch_log=False) is None
