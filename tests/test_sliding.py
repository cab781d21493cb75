"""Sliding-window evaluation: every target once, with the left context the grid gives, in the one
`evaluate` path; stride = eval length is the plain score exactly; bound and non-causal models are refused."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from golf import embedded, models
from golf.bpb import build_byte_table, load_tokenizer, window_bytes
from golf.data import find_shards, load_val_tokens, val_windows
from golf.errors import GolfError
from golf.models.base import LanguageModel, ScoreOutput
from golf.score import evaluate
from golf.sliding import plain_windows, sliding_windows

CPU = torch.device("cpu")
TINY = dict(vocab_size=1024, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2)


def context_model(seed: int = 0) -> LanguageModel:
    """A random model whose nats depend on the context: the baseline zero-inits its output
    projections (at init it is a bigram model), so every weight gets noise here."""
    torch.manual_seed(seed)
    model = models.build("ar", TINY).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


@pytest.fixture(scope="module")
def sp():
    return load_tokenizer(embedded.tokenizer_path())


@pytest.fixture(scope="module")
def table(sp):
    return build_byte_table(sp, 1024)


@pytest.fixture(scope="module")
def stream():
    return load_val_tokens(find_shards(embedded.shards_dir(), "val"), 1, max_tokens=1200)


@pytest.fixture(scope="module")
def model():
    return context_model()


def test_stride_equal_to_length_is_the_plain_score_exactly(model, stream, table):
    windows = sliding_windows(stream, 64)
    assert torch.equal(windows.rows(0, len(windows)), val_windows(stream, 64))
    plain = evaluate(model, val_windows(stream, 64), table, batch_windows=5, device=CPU)
    same = evaluate(model, windows, table, batch_windows=5, device=CPU)
    assert (same.nats_sum, same.tokens, same.bytes) == (plain.nats_sum, plain.tokens, plain.bytes)


@pytest.mark.parametrize("length,stride", [(64, 16), (64, 24), (64, 1), (50, 7), (64, 63)])
def test_every_target_is_scored_once_with_at_least_length_minus_stride_context(stream, length, stride):
    windows = sliding_windows(stream, length, stride)
    plain = sliding_windows(stream, length)
    positions = torch.cat([windows.target_positions(k, k + 1) for k in range(len(windows))])
    assert torch.equal(positions, torch.arange(1, plain.targets + 1))  # 1..M, once each, in order
    assert windows.targets == plain.targets
    context = windows.first[1:]  # tokens before a window's first scored target
    assert int(context.min()) >= length - stride


def test_sliding_nats_are_each_target_scored_after_exactly_length_tokens(model, stream, table):
    # Stride 1: target t (past the first window) is predicted from the L tokens before it; an
    # independent reference scores the window ending at t and keeps its last target.
    length, tokens = 16, stream[:161]
    result = evaluate(model, sliding_windows(tokens, length, 1), table, batch_windows=7, device=CPU)
    with torch.no_grad():
        first = model.score(tokens[None, :length + 1]).nats.double().sum()
        rest = sum(model.score(tokens[None, t - length:t + 1]).nats[0, -1].double() for t in range(length + 1, 161))
    assert result.nats_sum == pytest.approx(float(first + rest), rel=1e-6)
    assert result.tokens == 160


def test_sliding_bytes_equal_the_plain_byte_count(model, stream, table):
    plain = evaluate(model, val_windows(stream, 64), table, batch_windows=4, device=CPU)
    for stride in (8, 20):
        slid = evaluate(model, sliding_windows(stream, 64, stride), table, batch_windows=4, device=CPU)
        assert (slid.tokens, slid.bytes) == (plain.tokens, plain.bytes)
        assert slid.nats_sum != plain.nats_sum  # more context, another number


def test_sharding_and_batching_do_not_change_the_sum(model, stream, table):
    # Ranks take whole batches of one global grid; without a process group each returns its share.
    windows = sliding_windows(stream, 32, 8)
    whole = evaluate(model, windows, table, batch_windows=6, device=CPU)
    shares = [evaluate(model, windows, table, batch_windows=6, device=CPU, rank=r, world_size=3) for r in range(3)]
    assert sum(s.tokens for s in shares) == whole.tokens and sum(s.bytes for s in shares) == whole.bytes
    assert sum(s.nats_sum for s in shares) == pytest.approx(whole.nats_sum, rel=1e-12)
    other_batch = evaluate(model, windows, table, batch_windows=11, device=CPU)
    assert other_batch.nats_sum == pytest.approx(whole.nats_sum, rel=1e-9)


def test_window_bytes_come_from_a_sidecar_when_given(stream, table):
    sidecar = torch.zeros_like(stream, dtype=torch.int32)
    sidecar[1:] = window_bytes(table, stream[None]).flatten() * 2
    windows = sliding_windows(stream, 64, 16, sidecar=sidecar)
    rows = windows.rows(0, 3)
    assert torch.equal(windows.bytes(0, 3, rows, table), 2 * window_bytes(table, rows))


def test_bad_lengths_and_strides_are_one_line_errors(stream):
    for length, stride in [(64, 0), (64, 65), (0, 1)]:
        with pytest.raises(GolfError, match="stride"):
            sliding_windows(stream, length, stride)
    with pytest.raises(GolfError, match="fewer than seq_len"):
        sliding_windows(stream[:10], 64, 8)
    with pytest.raises(GolfError, match=r"\[N, T \+ 1\]"):
        plain_windows(stream)


class PeekingModel(LanguageModel):
    """Claims `exact` but lets every prediction see the window's last token: not causal."""

    variant = "peeking"

    def __init__(self) -> None:
        super().__init__(type("Config", (), {"vocab_size": 1024})())

    def score(self, tokens, *, generator=None, samples=1):
        nats = (tokens[:, -1:].float() / 1000).expand(-1, tokens.size(1) - 1) + 1.0
        return ScoreOutput(nats=nats, label="exact")


def test_a_model_that_sees_later_tokens_is_refused_for_sliding(stream, table):
    with pytest.raises(GolfError, match="causal score.*moved"):
        evaluate(PeekingModel(), sliding_windows(stream, 32, 8), table, batch_windows=4, device=CPU)
    # Non-overlapping windows stay allowed: the window is all it sees, and all of it is scored.
    assert evaluate(PeekingModel(), sliding_windows(stream, 32), table, batch_windows=4, device=CPU).tokens > 0


def test_a_bound_model_is_refused_for_sliding_with_the_reason(stream, table):
    sys.path.insert(0, str(REPO / "tests" / "plugins"))
    try:
        import toybits  # noqa: F401  (registers the toy bidirectional, Monte Carlo family)
    finally:
        sys.path.remove(str(REPO / "tests" / "plugins"))
    toy = models.build("toybits", {"vocab_size": 1024, "model_dim": 16})
    with pytest.raises(GolfError, match="returns a bound.*plain windows"):
        evaluate(toy, sliding_windows(stream, 32, 8), table, batch_windows=4, device=CPU, samples=2)
    assert evaluate(toy, sliding_windows(stream, 32), table, batch_windows=4, device=CPU, samples=2).label == "bound"


DDP_WORKER = Path(__file__).with_name("ddp_eval_worker.py")


@pytest.mark.slow
def test_two_process_ddp_equals_one_process(tmp_path):
    """Sliding eval, score-first TTT and document TTT under a real 2-process torchrun (gloo) give the
    1-process numbers."""
    import json
    import subprocess

    from golf.launch import torchrun_command

    out = {}
    for nproc in (1, 2):
        path = tmp_path / f"ddp{nproc}.json"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "OUT": str(path)}
        proc = subprocess.run(torchrun_command(nproc, DDP_WORKER), env=env, capture_output=True, text=True,
                              timeout=600, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[nproc] = json.loads(path.read_text())
    for kind in ("sliding", "ttt", "docs"):
        one, two = out[1][kind], out[2][kind]
        assert (one["tokens"], one["bytes"]) == (two["tokens"], two["bytes"])
        assert two["val_bpb"] == pytest.approx(one["val_bpb"], abs=1e-6)
        assert two.get("ttt_phase_bpb") == pytest.approx(one.get("ttt_phase_bpb"), abs=1e-6)
    assert out[2]["ttt"]["score_first"]["verified"] is True and out[2]["docs"]["score_first"]["verified"] is True
    assert out[2]["docs"]["ttt_updates"] > 0 and out[2]["docs"]["score_first"]["positions_trained"] > 0
