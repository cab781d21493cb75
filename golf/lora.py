"""Batched low-rank adapters: one independent LoRA per row of a batch, on a frozen model.

Document LoRA TTT (golf.doc_ttt) adapts a separate rank-r delta for each document while scoring
many documents in one forward pass. Row b of the batch gets W + A_b B_b on every adapted linear
layer (the attention's query and value projections) and h A_b B_b added to the head's logits
before their soft cap, with A_b, B_b its own tensors: the rows share no trainable state, so a document's score does not depend on
which documents share its batch (tests/test_doc_ttt.py checks it to rounding).

The adapters attach to a copy of the model through forward hooks on the named linear layers
(nothing in the model family changes) and through the model's `hidden`/`project` split for the
head, which may be tied to the embedding and so is not a layer of its own. `reset` puts every row
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

# The layers adapted by default, as the LoRA-TTT record adapts them (queries, values and the head).
DEFAULT_TARGETS = ("c_q", "c_v")


class BatchedLoRA(nn.Module):
    """Rank-r adapters for `slots` rows on `model`'s layers named `*.{target}` and on its head."""

    def __init__(self, model: LanguageModel, rank: int, slots: int, *, targets: tuple[str, ...] = DEFAULT_TARGETS,
                 seed: int = 0) -> None:
        super().__init__()
        if not (hasattr(model, "hidden") and hasattr(model, "project")):
            raise GolfError(f"LoRA TTT needs a model that splits its head off (hidden/project); model family "
                            f"{model.variant!r} does not. Use --ttt-lora-rank 0 (document-isolated scoring and "
                            "global SGD phases only)")
        if rank < 1 or slots < 1:
            raise GolfError(f"LoRA rank and batch must be >= 1, got rank {rank}, batch {slots}")
        self.rank, self.slots = rank, slots
        layers = {name: module for name, module in model.named_modules()
                  if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets}
        if not layers:
            raise GolfError(f"model {model.variant!r} has no linear layers named {', '.join(targets)} to adapt")
        generator = torch.Generator().manual_seed(seed)
        self.down = nn.ParameterDict()  # A [slots, in, r]
        self.up = nn.ParameterDict()  # B [slots, r, out]
        self._start: dict[str, torch.Tensor] = {}  # each A's start [in, r], shared by every slot
        shapes = {key(name): (m.in_features, m.out_features) for name, m in layers.items()}
        dim = int(model.config.model_dim)
        shapes["head"] = (dim, int(model.vocab_size))
        # Each adapter value is held four times (the weight, its gradient, Adam's two moments); a rank
        # or batch from an artifact's manifest must not ask for more than scoring may use.
        need = 16 * slots * rank * sum(fan_in + fan_out for fan_in, fan_out in shapes.values())
        if need > limits.SCORE_MEMORY_BYTES:
            raise GolfError(f"LoRA TTT: rank {rank} for {slots} documents side by side needs ~{need / 2**30:.1f} GiB "
                            f"of adapter state, over the {limits.SCORE_MEMORY_BYTES / 2**30:.0f} GiB scoring bound; "
                            "lower --ttt-lora-rank or --ttt-doc-batch")
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


def key(module_name: str) -> str:
    """A ParameterDict key for a module name (dots are not allowed in keys)."""
    return module_name.replace(".", "__")
