"""Batched low-rank adapters: one independent LoRA per row of a batch, on a frozen model.

Document LoRA TTT (golf.doc_ttt) adapts a separate rank-r delta for each document while scoring
many documents in one forward pass. Row b of the batch gets x A_b B_b added to the output of every
adapted module (TARGETS: the attention's query, key and value projections are linear layers, so
there it is W + A_b B_b; `o` and `mlp` are the whole attention and MLP sub-layers, an adapter in
parallel from the sub-layer's normed input to its output, as the phased-TTT records place theirs)
and h A_b B_b added to the head's logits before their soft cap, with A_b, B_b its own tensors: the
rows share no trainable state, so a document's score does not depend on which documents share its
batch (tests/test_doc_ttt.py checks it to rounding).

The adapters attach to a copy of the model through forward hooks on the named modules (nothing in
the model family changes) and through the model's `hidden`/`project` split for the head, which may
be tied to the embedding and so is not a layer of its own. A module a model runs more than once
(depth recurrence) adds the same adapter on every pass. `reset` puts every row
back to the same start (B = 0, so a fresh adapter is the base model exactly; A from a fixed seed,
so the start does not depend on the batch either).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from golf import limits
from golf.errors import GolfError
from golf.models.base import LanguageModel

# What each adapter target names: the modules (by the end of their name) whose output it adds to.
TARGETS = {"q": "attn.c_q", "k": "attn.c_k", "v": "attn.c_v", "o": "attn", "mlp": "mlp"}
# Adapted by default, as the LoRA-TTT record adapts them (queries, values and, always, the head).
DEFAULT_TARGETS = ("q", "v")


class BatchedLoRA(nn.Module):
    """Rank-r adapters for `slots` rows on `model`'s modules that `targets` (keys of TARGETS) name,
    and on its head."""

    def __init__(self, model: LanguageModel, rank: int, slots: int, *, targets: tuple[str, ...] = DEFAULT_TARGETS,
                 seed: int = 0) -> None:
        super().__init__()
        if rank < 1 or slots < 1:
            raise GolfError(f"LoRA rank and batch must be >= 1, got rank {rank}, batch {slots}")
        self.rank, self.slots = rank, slots
        layers = adapted_modules(model, targets)
        shapes = adapter_shapes(model, layers)
        need = adapter_state_bytes(shapes, rank, slots)
        if need > limits.ADAPTER_MEMORY_BYTES:
            raise GolfError(f"LoRA TTT: rank {rank} for {slots} documents side by side needs ~{need / 2**30:.1f} GiB "
                            f"of adapter state, over golf's {limits.ADAPTER_MEMORY_BYTES / 2**30:.0f} GiB bound; "
                            "lower --ttt-lora-rank or --ttt-doc-batch, or adapt fewer --ttt-lora-targets")
        generator = torch.Generator().manual_seed(seed)
        self.down = nn.ParameterDict()  # A [slots, in, r]
        self.up = nn.ParameterDict()  # B [slots, r, out]
        self._start: dict[str, torch.Tensor] = {}  # each A's start [in, r], shared by every slot
        device = next(model.parameters()).device
        for k, (fan_in, fan_out) in shapes.items():
            bound = 1 / math.sqrt(fan_in)  # nn.Linear's default init scale for the down projection
            self._start[k] = (torch.rand(fan_in, rank, generator=generator) * 2 - 1).mul_(bound).to(device)
            self.down[k] = nn.Parameter(torch.empty(slots, fan_in, rank, device=device))
            self.up[k] = nn.Parameter(torch.empty(slots, rank, fan_out, device=device))
        self.rows = torch.arange(slots, device=device)  # which slots the current batch's rows use
        self.active = False  # the hooks add nothing outside `logits` (a phase trains the base model alone)
        self._hooks = [module.register_forward_hook(self._hook(key(name))) for name, module in layers.items()]
        self.reset()

    @torch.no_grad()
    def reset(self) -> None:
        """Every slot back to the start: the base model exactly (B = 0)."""
        for k in self.down:
            self.down[k].copy_(self._start[k].expand_as(self.down[k]))
            self.up[k].zero_()

    def delta(self, k: str, x: torch.Tensor) -> torch.Tensor:
        """(x A_b) B_b for each row b of x [rows, T, in], in x's dtype."""
        down = self.down[k][self.rows].to(x.dtype)
        up = self.up[k][self.rows].to(x.dtype)
        return torch.bmm(torch.bmm(x, down), up)

    def _hook(self, k: str):
        def add_delta(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
            return output + self.delta(k, inputs[0]) if self.active else output
        return add_delta

    def logits(self, model: LanguageModel, input_ids: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """The adapted model's soft-capped logits for inputs [rows, T] (rows use slots `self.rows`): at
        every position [rows, T, V], or at positions `index` [rows, K] only ([rows, K, V]: the head is
        the costliest layer at a large vocabulary, and only the scored positions need it)."""
        if input_ids.size(0) != self.rows.numel():
            raise GolfError(f"LoRA batch has {self.rows.numel()} slots in use, the inputs {input_ids.size(0)} rows")
        self.active = True
        try:
            x = model.hidden(input_ids)
            if index is not None:
                x = x.gather(1, index[..., None].expand(-1, -1, x.size(-1)))
            return model.project(x, extra=self.delta("head", x))
        finally:
            self.active = False

    def detach(self) -> None:
        """Remove the hooks: the model is the base model again."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()


def adapted_modules(model: LanguageModel, targets: tuple[str, ...]) -> dict[str, nn.Module]:
    """The modules of `model` that `targets` (keys of TARGETS) name, by module name."""
    if not (hasattr(model, "hidden") and hasattr(model, "project")):
        raise GolfError(f"LoRA TTT needs a model that splits its head off (hidden/project); model family "
                        f"{model.variant!r} does not. Use --ttt-lora-rank 0 (document-isolated scoring and "
                        "global SGD phases only)")
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        raise GolfError(f"unknown LoRA target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    suffixes = tuple("." + TARGETS[t] for t in targets)
    layers = {name: module for name, module in model.named_modules() if ("." + name).endswith(suffixes)}
    missing = [TARGETS[t] for t in targets if not any(("." + name).endswith("." + TARGETS[t]) for name in layers)]
    if missing:
        raise GolfError(f"model {model.variant!r} has no {', '.join(missing)} modules to adapt")
    return layers


def adapter_shapes(model: LanguageModel, layers: dict[str, nn.Module]) -> dict[str, tuple[int, int]]:
    """(in, out) of each adapter, the head's included: a linear layer's own widths; a whole sub-layer
    (attention, MLP) maps the residual width to itself."""
    dim = int(model.config.model_dim)
    shapes = {key(name): (m.in_features, m.out_features) if isinstance(m, nn.Linear) else (dim, dim)
              for name, m in layers.items()}
    shapes["head"] = (dim, int(model.vocab_size))
    return shapes


def adapter_state_bytes(shapes: dict[str, tuple[int, int]], rank: int, slots: int) -> int:
    """Bytes of adapter state: each fp32 value held four times (the weight, its gradient, AdamW's two
    moments). A rank or batch from an artifact's manifest must not ask for more than golf allows."""
    return 16 * slots * rank * sum(fan_in + fan_out for fan_in, fan_out in shapes.values())


def key(module_name: str) -> str:
    """A ParameterDict key for a module name (dots are not allowed in keys)."""
    return module_name.replace(".", "__")
