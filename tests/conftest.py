"""Shared fixtures: a seeded generator, a CLT moment check, and a single-thread switch."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def gen() -> torch.Generator:
    """A CPU generator with a fixed seed (tests never touch the global RNG)."""
    return torch.Generator().manual_seed(20240607)


def _check_mean_var(samples: torch.Tensor, mean, var, z: float = 5.0) -> None:
    """Assert the per-coordinate sample mean and variance of ``samples`` ([n, ...], dim 0 =
    draws) match ``mean`` and ``var`` within ``z`` CLT standard errors.

    SE(mean) = √(var/n); SE(variance) = √((μ₄ − var²)/n) with μ₄ the sample fourth
    central moment (valid for any distribution with finite fourth moment).
    """
    x = samples.double()
    n = x.shape[0]
    mean = torch.as_tensor(mean, dtype=torch.float64).expand(x.shape[1:])
    var = torch.as_tensor(var, dtype=torch.float64).expand(x.shape[1:])
    m_hat = x.mean(0)
    se_mean = torch.sqrt(var / n)
    assert bool(((m_hat - mean).abs() <= z * se_mean + 1e-12).all()), (
        f"sample mean {m_hat} vs expected {mean} (allowed {z} x SE = {z * se_mean})"
    )
    c = x - m_hat
    v_hat = (c**2).sum(0) / (n - 1)
    mu4 = (c**4).mean(0)
    se_var = torch.sqrt((mu4 - v_hat**2).clamp(min=0.0) / n)
    assert bool(((v_hat - var).abs() <= z * se_var + 1e-12).all()), (
        f"sample variance {v_hat} vs expected {var} (allowed {z} x SE = {z * se_var})"
    )


@pytest.fixture
def check_mean_var():
    """The CLT moment check as a fixture: ``check_mean_var(samples, mean, var, z=5)``."""
    return _check_mean_var


@pytest.fixture(scope="session", autouse=True)
def _one_thread_for_the_session():
    """All unit tests run single-threaded: on CI's 2 cores, tiny-tensor math is faster so,
    and timings don't depend on what else the machine is doing."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
