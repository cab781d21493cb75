"""Does a model family compile cleanly? The check every registered family passes (tests/test_compile.py).

A graph break (`fullgraph=True` turns it into an error) or a recompilation on every step would
otherwise only show on a rented GPU node: `check_compiles` compiles a model's `loss` (forward and
backward) and `score` as the trainer compiles its model, steps them on several batches, and fails
on either. A separate module from golf.compile because a record's train_gpt.py never runs it, and
its packed code counts against the cap.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch
import torch._dynamo

from golf.errors import GolfError
from golf.models.base import LanguageModel


class CompileCheckError(GolfError):
    """A model's loss or score breaks the graph or recompiles on a later step."""


def check_compiles(model: LanguageModel, tokens: list[torch.Tensor], *, backend: str = "inductor",
                   autocast_dtype: torch.dtype | None = None, samples: int = 2) -> dict[str, Any]:
    """Compile `model.loss` and `model.score` as the trainer does and run one step per batch in `tokens`
    (same shape, at least two): loss forward + backward, score under inference mode.

    Fails with CompileCheckError on a graph break (fullgraph=True) or on any recompilation after the
    first step. Returns the first-step (compiling) and later-step times in seconds. Resets dynamo's
    caches first, so earlier compilations in the process cannot hide or cause a recompile.
    `score` gets no generator: Dynamo cannot trace a torch.Generator argument (torch 2.13), so a
    Monte Carlo family's compiled score draws from the global RNG, seeded by the caller.
    """
    if len(tokens) < 2:
        raise ValueError("check_compiles needs at least two batches: the second shows a recompile")
    torch._dynamo.reset()
    name = model.variant or type(model).__name__
    loss = torch.compile(model.loss, dynamic=False, fullgraph=True, backend=backend)
    score = torch.compile(model.score, dynamic=False, fullgraph=True, backend=backend)
    device = tokens[0].device
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else contextlib.nullcontext())

    def train_step(batch: torch.Tensor) -> None:
        with autocast:
            value = loss(batch)
        value.backward()
        model.zero_grad(set_to_none=True)

    def score_step(batch: torch.Tensor) -> None:
        with torch.inference_mode(), autocast:
            score(batch, generator=None, samples=samples)

    times: dict[str, Any] = {"backend": backend}
    for what, step in (("loss", train_step), ("score", score_step)):
        try:
            start = time.perf_counter()
            step(tokens[0])
            times[f"{what}_compile_s"] = time.perf_counter() - start
            start = time.perf_counter()
            with torch._dynamo.config.patch(error_on_recompile=True):
                for batch in tokens[1:]:
                    step(batch)
            times[f"{what}_step_s"] = (time.perf_counter() - start) / (len(tokens) - 1)
        except torch._dynamo.exc.RecompileError as e:
            raise CompileCheckError(f"model {name!r}: {what} recompiles on a later step: "
                                    f"{_first_line(e)}; {_failed_guard(e)}") from e
        except (torch._dynamo.exc.Unsupported, torch._dynamo.exc.UserError) as e:
            # UserError: data-dependent Python control flow, which dynamo can only trace by breaking.
            raise CompileCheckError(f"model {name!r}: {what} breaks the graph under fullgraph=True: "
                                    f"{_first_line(e)}") from e
        except torch._dynamo.exc.TorchDynamoException as e:  # e.g. the backend failed to compile it
            raise CompileCheckError(f"model {name!r}: {what} does not compile with {backend}: "
                                    f"{_first_line(e)}") from e
    return times


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def _failed_guard(exc: BaseException) -> str:
    """The first guard that failed, e.g. `self...rotary._cache is None  # if self._cache is None ...`."""
    guards = (line.strip()[2:] for line in str(exc).splitlines() if line.strip().startswith("- "))
    return "guard failed: " + next(guards, "(not given)")
