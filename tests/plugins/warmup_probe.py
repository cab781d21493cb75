"""Instruments a real train_gpt.py run for tests/test_compile.py; loaded in every rank by
GOLF_MODEL_PLUGINS=warmup_probe (it registers no family).

It records, in order, to $WARMUP_PROBE_DIR/rank<R>.jsonl:
- `train`: every batch the training step feeds the model (DDP's forward, outside the compiled graph):
  a digest per window and a digest of the weights at that moment;
- `score`: every window the AR model scores (evaluation, which reads the val split);
- `step`: every optimizer step, with the size and a digest of the optimizer's state before it;
- `load`: every optimizer.load_state_dict (the warm-up reset), with the state after it.
"""

from __future__ import annotations

import json
import os

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.optimizer import register_optimizer_step_pre_hook

from golf.models.ar import GPT

from digests import tensors_digest, window_digests  # beside this file, on PYTHONPATH


def record(**event) -> None:
    rank = os.environ.get("RANK", "0")
    with open(os.path.join(os.environ["WARMUP_PROBE_DIR"], f"rank{rank}.jsonl"), "a") as f:
        f.write(json.dumps(event) + "\n")


def optimizer_state(opt: torch.optim.Optimizer) -> dict:
    tensors = [v for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    return {"optimizer": type(opt).__name__, "state_len": len(opt.state), "state": tensors_digest(tensors),
            "groups": json.dumps(groups, sort_keys=True, default=str)}


_ddp_forward = DistributedDataParallel.forward
_score = GPT.score
_load_state_dict = torch.optim.Optimizer.load_state_dict


def ddp_forward(self, tokens, *args, **kwargs):
    record(kind="train", windows=window_digests(tokens), weights=tensors_digest(self.module.parameters()))
    return _ddp_forward(self, tokens, *args, **kwargs)


def score(self, tokens, **kwargs):
    record(kind="score", windows=window_digests(tokens))
    return _score(self, tokens, **kwargs)


def load_state_dict(self, state_dict):
    _load_state_dict(self, state_dict)
    record(kind="load", **optimizer_state(self))


DistributedDataParallel.forward = ddp_forward
GPT.score = score
torch.optim.Optimizer.load_state_dict = load_state_dict
register_optimizer_step_pre_hook(
    lambda opt, args, kwargs: record(kind="step", **optimizer_state(opt)))
