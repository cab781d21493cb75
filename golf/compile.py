"""COMPILE: torch.compile of the training step.

On H100 the official trainer compiles the model with `dynamic=False, fullgraph=True` and the Muon
Newton–Schulz iteration with defaults. `COMPILE=1` makes a CPU run do the same, so the code an
8×H100 run executes (less NCCL and flash attention) runs, and is tested, here. Whether a family
compiles cleanly is checked by golf.compile_check, which records do not ship.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from golf.errors import GolfError
from golf.optim import zeropower_via_newtonschulz5

COMPILE_SETTINGS = ("auto", "1", "0")


def resolve_compile(setting: str, device: torch.device) -> bool:
    """COMPILE=auto|1|0 on `device`: auto compiles on CUDA only (on a CPU a compile costs a minute or more)."""
    if setting not in COMPILE_SETTINGS:
        raise GolfError(f"COMPILE must be auto, 1 or 0, not {setting!r}")
    return device.type == "cuda" if setting == "auto" else setting == "1"


def compile_model(model: torch.nn.Module) -> torch.nn.Module:
    """The official call: one static-shape graph for the whole loss, no Python fallbacks."""
    return torch.compile(model, dynamic=False, fullgraph=True)


def newton_schulz(compiled: bool) -> Callable[..., torch.Tensor]:
    """Muon's orthogonaliser, compiled (as official) when the model is."""
    return torch.compile(zeropower_via_newtonschulz5) if compiled else zeropower_via_newtonschulz5
