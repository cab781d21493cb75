"""Score-first test-time training: chunks scored before training on them, proven by the guard on
every run; an illegal order (train, then score) is caught; adapting helps on text that repeats."""

from __future__ import annotations

import pytest
import torch

from golf import embedded
from golf.data import find_shards, load_val_tokens
from golf.errors import GolfError
from golf.evalplan import EvalPlan, plan_from_meta
from golf.score import evaluate
from golf.sliding import sliding_windows
from golf.scorefirst import ScoreFirstGuard, ScoreFirstViolation
from golf.ttt import TTTConfig, chunk_target_range, score_first_ttt, train_on_chunk
from test_sliding import context_model, sp, table  # noqa: F401  (fixtures)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def stream():
    return load_val_tokens(find_shards(embedded.shards_dir(), "val"), 1, max_tokens=2049)


def test_legal_ttt_scores_every_target_once_and_proves_it(stream, table):
    model = context_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    windows = sliding_windows(stream, 64, 32)
    result = score_first_ttt(model, windows, table, TTTConfig(chunk_tokens=512, epochs=1, lr=0.01, batch_seqs=4),
                             batch_windows=8, device=CPU)
    plain = evaluate(model, windows, table, batch_windows=8, device=CPU)
    assert (result.score.tokens, result.score.bytes, result.score.label) == (plain.tokens, plain.bytes, "exact")
    assert result.chunks == 4 and result.updates > 0
    assert result.guard["verified"] and result.guard["targets_scored"] == windows.targets
    assert 0 < result.guard["positions_trained"] < windows.targets  # the last chunk is never trained on
    assert result.score.nats_sum != plain.nats_sum
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the caller's weights untouched


def test_ttt_without_training_is_the_plain_score(stream, table):
    model = context_model()
    windows = sliding_windows(stream, 64, 32)
    still = score_first_ttt(model, windows, table, TTTConfig(chunk_tokens=256, epochs=0), batch_windows=8, device=CPU)
    plain = evaluate(model, windows, table, batch_windows=8, device=CPU)
    assert still.score.nats_sum == pytest.approx(plain.nats_sum, rel=1e-12) and still.updates == 0


def test_training_before_scoring_is_caught(stream, table):
    # The deliberately illegal order: train on the first chunk, then score it.
    model = context_model()
    windows = sliding_windows(stream, 64, 32)
    chunk = windows[0:16]
    a, b = chunk_target_range(chunk)
    guard = ScoreFirstGuard(stream.numel(), CPU)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(ScoreFirstViolation, match="reads position 1, a target that has not been scored"):
        train_on_chunk(model, optimizer, stream, a, b, 64, TTTConfig(epochs=1), 0.01, guard,
                       device=CPU, rank=0, world_size=1, autocast_dtype=None)
    # Had the update gone unreported, its weights still saw the chunk: scoring it is refused too.
    guard.trained[a:b] = True
    with pytest.raises(ScoreFirstViolation, match=f"target position {a} is about to be scored by weights"):
        evaluate(model, chunk, table, batch_windows=8, device=CPU, guard=guard)


def test_a_chunk_scored_twice_or_not_at_all_is_caught(stream):
    guard = ScoreFirstGuard(100, CPU)
    guard.scoring(torch.arange(1, 50))
    with pytest.raises(ScoreFirstViolation, match="not each scored exactly once"):
        guard.commit_scored(1, 60)
    guard = ScoreFirstGuard(100, CPU)
    guard.scoring(torch.arange(1, 50))
    guard.scoring(torch.arange(40, 50))
    with pytest.raises(ScoreFirstViolation, match="exactly once"):
        guard.commit_scored(1, 50)


def test_adapting_helps_on_text_that_repeats(table):
    # A stream that repeats one 300-token passage: after the first chunk, TTT has seen it.
    passage = load_val_tokens(find_shards(embedded.shards_dir(), "val"), 1, max_tokens=300)
    stream = passage.repeat(8)
    model = context_model()
    windows = sliding_windows(stream, 64)
    plain = evaluate(model, windows, table, batch_windows=8, device=CPU)
    adapted = score_first_ttt(model, windows, table, TTTConfig(chunk_tokens=320, epochs=2, lr=0.05, batch_seqs=4),
                              batch_windows=8, device=CPU)
    assert adapted.score.val_bpb < 0.9 * plain.val_bpb


def test_bad_ttt_knobs_are_one_line_errors():
    with pytest.raises(GolfError, match="chunk_tokens must be > 0.*lr must be >= 0"):
        TTTConfig(chunk_tokens=0, lr=-1.0)


def test_the_recorded_plan_is_the_default_and_flags_override_it():
    recorded = {"seq_len": 256, "stride": 64, "ttt": {"chunk_tokens": 4096, "epochs": 2}}
    plan = plan_from_meta(recorded)
    assert plan == EvalPlan(256, 64, TTTConfig(chunk_tokens=4096, epochs=2)) and plan.name == "legal_ttt"
    assert plan_from_meta(recorded, ttt=False) == EvalPlan(256, 64)
    assert plan_from_meta(recorded, length=512, ttt=False) == EvalPlan(512, 512)  # another length: its own blocks
    assert plan_from_meta({"seq_len": 1024}) == EvalPlan(1024, 1024)  # artifacts from before sliding existed
    assert plan_from_meta({"seq_len": 1024}, ttt_overrides={"lr": 0.01}).ttt == TTTConfig(lr=0.01)
    with pytest.raises(GolfError, match="stride between 1 and it"):
        plan_from_meta(recorded, stride=300)
