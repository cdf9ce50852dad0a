"""``cpu_bernoulli`` draws ``rand < p`` where that is ``bernoulli(full(p))`` bit for bit,
leaving the generators where ``bernoulli`` leaves them (Captum-order draws rely on it)."""

from __future__ import annotations

import pytest
import torch

import whybox.core.randomness as randomness
from whybox.core.randomness import GeneratorRandom, GlobalRandom, cpu_bernoulli


def _plain(shape, p, generator):
    return torch.bernoulli(torch.full(shape, p), generator=generator).bool()


@pytest.mark.parametrize("default", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1,), (17,), (200, 12), (3, 4, 50)])
@pytest.mark.parametrize("p", [0.5, 0.2, 0.0, 1.0])
def test_global_draws_and_state_match_bernoulli(default, shape, p):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        torch.manual_seed(11)
        want = _plain(shape, p, None)
        want_state = torch.get_rng_state()
        torch.manual_seed(11)
        got = cpu_bernoulli(shape, p, None)
        assert torch.equal(got, want)
        assert torch.equal(torch.get_rng_state(), want_state)
        assert got.dtype == torch.bool
    finally:
        torch.set_default_dtype(previous)


def test_private_generator_draws_and_state_match_bernoulli():
    a, b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for shape in [(64, 9), (1, 300), (2,)]:
        assert torch.equal(cpu_bernoulli(shape, 0.5, a), _plain(shape, 0.5, b))
    assert torch.equal(a.get_state(), b.get_state())


def test_sources_give_the_bernoulli_bits():
    torch.manual_seed(3)
    want = _plain((40, 7), 0.5, None)
    torch.manual_seed(3)
    assert torch.equal(GlobalRandom().bernoulli((40, 7), 0.5), want)
    got = GeneratorRandom(torch.Generator().manual_seed(9)).bernoulli((40, 7), 0.5)
    assert torch.equal(got, _plain((40, 7), 0.5, torch.Generator().manual_seed(9)))


def test_without_the_probe_bernoulli_itself_draws(monkeypatch):
    monkeypatch.setattr(randomness, "_rand_is_bernoulli", lambda: False)
    calls = []
    real = torch.bernoulli

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "bernoulli", spy)
    torch.manual_seed(1)
    got = cpu_bernoulli((10, 3), 0.5, None)
    assert calls == [1]
    torch.manual_seed(1)
    assert torch.equal(got, real(torch.full((10, 3), 0.5)).bool())


def test_the_probe_holds_on_this_torch():
    # if this fails, torch changed how it draws: the fast path is then off (still right)
    assert randomness._rand_is_bernoulli()
