"""Muon: momentum SGD whose update is orthogonalised by a Newton–Schulz iteration.

The official baseline trains every 2-D block matrix with Muon and everything else with Adam.
Orthogonalising the momentum gives each update the same size in every direction of the matrix,
which trains these small models much faster per step than Adam. Ranks split the matrices
round-robin, each orthogonalises its share, and one all-reduce of a flat buffer shares the
results (gradients were already averaged by DDP).

Options the leaderboard's top records use (off by default): MuonEq-R (each row of the momentum
update normalised to unit norm before orthogonalisation, so no row dominates the iteration),
Polar-Express coefficients (a different cubic per Newton–Schulz step, converging in fewer steps:
Amsel et al. 2025, arXiv:2505.16932, the published 5-step set for safety factor 2e-2, cushion 2),
and decoupled weight decay p ← p·(1 − lr·wd), which tapers with the learning-rate schedule.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

# The official quintic coefficients: they push all singular values towards ~1 in 5 steps.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
# Polar Express: one (a, b, c) per step; later steps repeat the last.
POLAR_EXPRESS_COEFFICIENTS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)
POLAR_EXPRESS_SAFETY = 1.02  # the paper's normalisation margin: the spectral norm must start below 1


def zeropower_via_newtonschulz5(grad: torch.Tensor, steps: int = 5, eps: float = 1e-7,
                                dtype: torch.dtype = torch.bfloat16, polar_express: bool = False) -> torch.Tensor:
    """Approximately orthogonalise a matrix (U·Vᵀ of its SVD) with `steps` odd-polynomial
    iterations: the official quintic, or the Polar-Express schedule."""
    x = grad.to(dtype)
    x = x / (x.norm() * (POLAR_EXPRESS_SAFETY if polar_express else 1.0) + eps)
    transposed = grad.size(0) > grad.size(1)
    if transposed:  # iterate on the wide orientation: X Xᵀ is then the smaller Gram matrix
        x = x.T
    for step in range(steps):
        a, b, c = (POLAR_EXPRESS_COEFFICIENTS[min(step, len(POLAR_EXPRESS_COEFFICIENTS) - 1)]
                   if polar_express else NS_COEFFICIENTS)
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if transposed else x


def equalize_rows(update: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """MuonEq-R: every row scaled to unit L2 norm."""
    return update / update.float().norm(dim=-1, keepdim=True).clamp_min(eps).to(update.dtype)


class Muon(torch.optim.Optimizer):
    """Muon with Nesterov momentum; `ns_dtype` is bf16 on GPU (fast tensor cores) and fp32 on
    CPU, where bf16 matmuls are slower than fp32 and less accurate."""

    def __init__(self, params, lr: float, momentum: float, backend_steps: int,
                 nesterov: bool = True, ns_dtype: torch.dtype = torch.bfloat16,
                 orthogonalize: Callable[..., torch.Tensor] = zeropower_via_newtonschulz5,
                 row_norm: bool = False, polar_express: bool = False, weight_decay: float = 0.0) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, backend_steps=backend_steps,
                                      nesterov=nesterov, row_norm=row_norm, polar_express=polar_express,
                                      weight_decay=weight_decay))
        self.ns_dtype = ns_dtype
        self.orthogonalize = orthogonalize  # the trainer passes a torch.compile'd copy on GPU

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        distributed = dist.is_available() and dist.is_initialized()
        world_size = dist.get_world_size() if distributed else 1
        rank = dist.get_rank() if distributed else 0
        for group in self.param_groups:
            params = group["params"]
            if not params:
                continue
            flat = torch.zeros(sum(p.numel() for p in params), device=params[0].device,
                               dtype=self.ns_dtype)
            offset = 0
            for i, p in enumerate(params):
                if i % world_size == rank and p.grad is not None:
                    update = self._orthogonal_update(p, group)
                    flat[offset:offset + p.numel()] = update.reshape(-1)
                offset += p.numel()
            if distributed:
                dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            offset = 0
            for p in params:
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(flat[offset:offset + p.numel()].view_as(p).to(p.dtype), alpha=-group["lr"])
                offset += p.numel()

    def _orthogonal_update(self, p: torch.Tensor, group: dict) -> torch.Tensor:
        grad = p.grad
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(grad)
        buf = state["momentum_buffer"]
        buf.mul_(group["momentum"]).add_(grad)
        if group["nesterov"]:
            grad = grad.add(buf, alpha=group["momentum"])
        if group["row_norm"]:
            grad = equalize_rows(grad)
        update = self.orthogonalize(grad, steps=group["backend_steps"], dtype=self.ns_dtype,
                                    polar_express=group["polar_express"])
        # Scale so tall matrices get updates of the same RMS as square ones.
        return update * max(1.0, grad.size(0) / grad.size(1)) ** 0.5
