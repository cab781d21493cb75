"""Calibration for GPTQ: the input second moment H = E[x xᵀ] of every linear layer, on train tokens.

GPTQ needs, per weight matrix, how its inputs co-vary (quant/gptq.py). Forward pre-hooks on each
`nn.Linear` accumulate xᵀx in fp64 over a few batches of *training* tokens (never validation:
the score must not have seen its own data). Under torchrun each rank reads its own share of the
stream and the sums are all-reduced, so every rank ends with the same Hessians and the artifact
does not depend on the world size beyond the tokens seen.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn


def collect_hessians(model: nn.Module, batches: Iterable[Tensor], *, device: torch.device,
                     autocast_dtype: torch.dtype | None = None) -> tuple[dict[str, Tensor], float]:
    """({"<module>.weight": H [in, in] fp32 on the CPU}, seconds spent) for every nn.Linear."""
    start = time.perf_counter()
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    hooks = []

    def hook_for(name: str, in_features: int):
        sums[name] = torch.zeros(in_features, in_features, dtype=torch.float64, device=device)
        counts[name] = 0

        def hook(_module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            x = inputs[0].detach().reshape(-1, in_features).to(torch.float64)
            sums[name].addmm_(x.T, x)
            counts[name] += x.shape[0]

        return hook

    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            hooks.append(module.register_forward_pre_hook(hook_for(f"{name}.weight", module.in_features)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                with torch.autocast(device.type, dtype=autocast_dtype or torch.bfloat16,
                                    enabled=autocast_dtype is not None):
                    model(batch.to(device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    hessians = {}
    for name, total in sums.items():
        count = torch.tensor(float(counts[name]), dtype=torch.float64, device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(total)
            dist.all_reduce(count)
        hessians[name] = (total / count.clamp_min(1)).float().cpu()
    return hessians, time.perf_counter() - start
