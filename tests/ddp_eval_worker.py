"""Run under torchrun by tests/test_sliding.py: a sliding-window score, a score-first TTT score and a
document TTT score (per-document LoRA and a global SGD phase) of one fixed random model, sharded over
the ranks; rank 0 writes them to $OUT as JSON."""

from __future__ import annotations

import faulthandler
import json
import os

import torch
import torch.distributed as dist

from golf import embedded
from golf.bpb import build_byte_table, load_tokenizer
from golf.data import find_shards, load_val_tokens
from golf.evalplan import EvalPlan, run_plan
from golf.launch import leave_worker
from golf.score import evaluate
from golf.sliding import sliding_windows
from golf.ttt import TTTConfig, score_first_ttt
from test_doc_ttt import multi_doc_stream
from test_sliding import context_model


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = context_model()
    table = build_byte_table(load_tokenizer(embedded.tokenizer_path()), 1024)
    tokens = load_val_tokens(find_shards(embedded.shards_dir(), "val"), 1, max_tokens=4097)
    windows = sliding_windows(tokens, 64, 16)
    device = torch.device("cpu")
    common = dict(batch_windows=8, device=device, rank=rank, world_size=world)
    sliding = evaluate(model, windows, table, **common)
    ttt = score_first_ttt(model, windows, table, TTTConfig(chunk_tokens=1024, epochs=2, lr=0.05, batch_seqs=5),
                          **common)
    docs_plan = EvalPlan(64, 32, TTTConfig(mode="docs", lora_rank=4, doc_batch=2, prefix_docs=3, epochs=1, lr=0.05,
                                           batch_seqs=3))
    docs = run_plan(model, multi_doc_stream(), table, docs_plan, **common)
    if rank == 0:
        with open(os.environ["OUT"], "w") as f:
            json.dump({"sliding": sliding.as_dict(), "ttt": ttt.as_dict(), "docs": docs.as_dict()}, f)
    dist.barrier()  # no rank tears gloo down while another still uses it (seen: SIGABRT at exit)
    dist.destroy_process_group()
    leave_worker()


if __name__ == "__main__":
    faulthandler.enable()  # a rank killed by a signal prints its Python stack first
    main()
