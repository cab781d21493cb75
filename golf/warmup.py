"""The compile warm-up, and undoing it: the timed run must start exactly where an unwarmed one would.

A compiled run spends its first steps compiling, so the official trainer takes WARMUP_STEPS real
training steps before the clock starts and then restores the initial weights and optimizer state
and restarts the data loader. Anything the warm-up leaves behind leaks into the scored run: Adam's
moments and step count, Muon's momentum, the RNG stream a stochastic loss draws from, gradients. A
warm-up that touches validation data trains on the test set (a record did: #1530), so the warm-up
gets only a step function over the training stream and never sees the val windows.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch


class TrainingSnapshot:
    """Weights, buffers, optimizer states and torch RNG streams at one moment, to return to."""

    def __init__(self, model: torch.nn.Module, optimizers: list[torch.optim.Optimizer]) -> None:
        self.model, self.optimizers = model, optimizers
        self.model_state = copy.deepcopy(model.state_dict())
        self.optimizer_states = [copy.deepcopy(opt.state_dict()) for opt in optimizers]
        self.cpu_rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def restore(self) -> None:
        # load_state_dict copies into the existing tensors, so DDP and compiled graphs that hold
        # them keep working; an optimizer's state is replaced whole (a fresh one has none).
        self.model.load_state_dict(self.model_state)
        for opt, state in zip(self.optimizers, self.optimizer_states):
            opt.load_state_dict(state)
        self.model.zero_grad(set_to_none=True)
        torch.set_rng_state(self.cpu_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)


def warm_up_and_reset(model: torch.nn.Module, optimizers: list[torch.optim.Optimizer], steps: int,
                      train_step: Callable[[], None], log: Callable[[int, float], None]) -> float:
    """Run `train_step` (one full optimizer step on the training stream) `steps` times, then restore
    the state from before; `log(step, ms)` after each. Returns the warm-up's wall time in ms.

    The caller restarts its data loader afterwards: the loader is not state this function can see.
    """
    snapshot = TrainingSnapshot(model, optimizers)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        step_start = time.perf_counter()
        train_step()
        log(step, 1000.0 * (time.perf_counter() - step_start))
    snapshot.restore()
    return 1000.0 * (time.perf_counter() - start)
