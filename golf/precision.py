"""PRECISION: the training dtype policy, with the official GPU policy runnable on any device.

The official trainer on H100 keeps the model in bf16 except the linear weights and the small
vectors and control tensors, which stay fp32 (cast to the activation dtype at each use), and it
trains and evaluates under bf16 autocast. `gpu` applies exactly that policy on whatever device
runs, so a CPU test exercises the casts an 8×H100 run makes; `cpu` keeps every weight fp32
(training autocast then follows AUTOCAST: bf16 only where the CPU has native bf16); `auto` picks
`gpu` on CUDA and `cpu` elsewhere, as golf always did.
"""

from __future__ import annotations

import torch

from golf.errors import GolfError

PRECISIONS = ("auto", "gpu", "cpu")
AUTOCAST_SETTINGS = ("auto", "bf16", "off")


def resolve_precision(setting: str, device: torch.device) -> str:
    """`gpu` or `cpu` for PRECISION=auto|gpu|cpu on `device`."""
    if setting not in PRECISIONS:
        raise GolfError(f"PRECISION must be auto, gpu or cpu, not {setting!r}")
    if setting == "auto":
        return "gpu" if device.type == "cuda" else "cpu"
    return setting


def apply_dtype_policy(model: torch.nn.Module, roles: dict[str, str], precision: str) -> torch.nn.Module:
    """Cast `model` in place to `precision`'s policy; `roles` are its checked tensor roles.

    `gpu`: bf16 everywhere, then linear weights back to fp32 (cast per matmul, so the optimizer
    updates fp32 weights) and every vector or `control` tensor back to fp32 (gains and mixes are
    too small to be worth bf16 and too sensitive to its rounding). `cpu`: fp32 throughout.
    """
    if precision == "cpu":
        return model.float()
    model.bfloat16()
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.float()
    for name, param in model.named_parameters():
        if param.ndim < 2 or roles[name] == "control":
            param.data = param.data.float()
    return model


def train_autocast(setting: str, precision: str) -> torch.dtype | None:
    """The training autocast dtype for AUTOCAST=auto|bf16|off: under the `gpu` policy bf16 (the
    official), under `cpu` bf16 only where the CPU has native bf16 (AVX512-BF16/AMX: ~1.4x its fp32
    speed), else none (fp32)."""
    if setting not in AUTOCAST_SETTINGS:
        raise GolfError(f"AUTOCAST must be auto, bf16 or off, not {setting!r}")
    if setting == "off":
        return None
    if setting == "bf16" or precision == "gpu":
        return torch.bfloat16
    native = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)()
    return torch.bfloat16 if native else None


def eval_autocast(precision: str) -> torch.dtype | None:
    """bf16 under the `gpu` policy, as the official eval; fp32 under `cpu`, which is what
    `golf score` computes on a CPU, so a CPU run's roundtrip and `golf score` agree exactly."""
    return torch.bfloat16 if precision == "gpu" else None
