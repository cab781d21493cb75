"""Muon against a float64 reference of the official Newton–Schulz step."""

from __future__ import annotations

import torch

from golf.optim import NS_COEFFICIENTS, Muon, zeropower_via_newtonschulz5


def reference_newton_schulz(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    a, b, c = NS_COEFFICIENTS
    x = g.double() / (g.double().norm() + 1e-7)
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + b * gram @ x + c * gram @ gram @ x
    return x.T if tall else x


def test_newton_schulz_fp32_matches_float64():
    torch.manual_seed(0)
    for shape in [(64, 64), (32, 96), (96, 32)]:
        g = torch.randn(shape)
        got = zeropower_via_newtonschulz5(g, dtype=torch.float32).double()
        want = reference_newton_schulz(g)
        assert (got - want).abs().max() < 1e-4
        s = torch.linalg.svdvals(want)
        # The quintic pushes singular values towards 1 (all but the very smallest of a square matrix).
        assert torch.quantile(s, 0.1) > 0.5 and s.max() < 1.5


def test_muon_steps_match_float64_reference():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(48, 16))
    opt = Muon([p], lr=0.04, momentum=0.95, backend_steps=5, ns_dtype=torch.float32)
    ref_p, buf = p.detach().double().clone(), torch.zeros(48, 16, dtype=torch.float64)
    for _ in range(3):
        g = torch.randn(48, 16)
        p.grad = g.clone()
        opt.step()
        buf = 0.95 * buf + g.double()
        nesterov = g.double() + 0.95 * buf
        ref_p -= 0.04 * reference_newton_schulz(nesterov) * (48 / 16) ** 0.5
    assert (p.detach().double() - ref_p).abs().max() < 1e-5


def test_muon_skips_params_without_grad():
    p = torch.nn.Parameter(torch.ones(4, 4))
    Muon([p], lr=1.0, momentum=0.9, backend_steps=5, ns_dtype=torch.float32).step()
    assert torch.equal(p.detach(), torch.ones(4, 4))
