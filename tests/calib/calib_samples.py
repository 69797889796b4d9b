"""Seeded test data of named shapes, shared by the calibrator tests."""

from __future__ import annotations

import torch

__all__ = ["KINDS", "make", "sample"]


def sample(kind: str, n: int, seed: int) -> torch.Tensor:
    """Test data of a named shape, from a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(n, generator=gen, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    normal = torch.randn(n, generator=gen, dtype=torch.float64)
    data = {
        "gaussian": normal,
        "laplace": -torch.sign(u - 0.5) * torch.log1p(-2 * (u - 0.5).abs()),
        "relu": torch.relu(normal) * 3,
        # Student-t, df = 2: N / sqrt(chi2_2 / 2), chi2_2 = -2 log U.
        "student_t2": normal / torch.sqrt(-torch.log(u)),
        "constant": torch.full((n,), -1.75, dtype=torch.float64),
        "zeros": torch.zeros(n, dtype=torch.float64),
    }[kind]
    return data.to(torch.float32)


KINDS = ["gaussian", "laplace", "relu", "student_t2", "constant", "zeros"]


def make(kind: str, n: int = 20_000, seed: int = 0) -> torch.Tensor:
    """Test data drawn with torch's global generator seeded with ``seed``."""
    torch.manual_seed(seed)
    if kind == "gaussian":
        return torch.randn(n)
    if kind == "laplace":
        return torch.distributions.Laplace(0.5, 2.0).sample((n,))
    if kind == "relu":
        return torch.relu(torch.randn(n))
    if kind == "student_t2":
        return torch.distributions.StudentT(2.0).sample((n,))
    if kind == "constant":
        return torch.full((n,), 3.5)
    if kind == "negative_constant":
        return torch.full((n,), -2.0)
    if kind == "zeros":
        return torch.zeros(n)
    if kind == "single":
        return torch.tensor([-1.25])
    raise AssertionError(kind)
