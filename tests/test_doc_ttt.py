"""Document-isolated score-first TTT: documents tile the stream, each is scored alone (reordering
them changes nothing, with or without adapters), a document's score does not depend on its batch,
each adapter target adds its own delta to its module's output, adapters start as the base model,
the phases train only on scored documents, byte sidecars count as the table does, and the guard
catches training before scoring, per adapter and shared."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import read_result, run_cli, run_trainer
from golf import embedded
from golf.data import find_shards, load_val_tokens
from golf.bpb import window_bytes
from golf.doc_ttt import DocumentWindows, balance, find_documents, phase_bounds, score_documents, train_phase
from golf.errors import GolfError
from golf.evalplan import EvalPlan, plan_from_meta, run_plan
from golf.lora import TARGETS, BatchedLoRA, key
from golf.score import evaluate
from golf.scorefirst import ScoreFirstGuard, ScoreFirstViolation
from golf.sliding import sliding_windows
from golf.ttt import TTTConfig
from test_sliding import context_model, sp, table  # noqa: F401  (fixtures)

CPU = torch.device("cpu")
BOS = 1
# Target counts of the documents of the test stream: one shorter than a chunk, one of a single
# target, some longer than the eval length. Their sum (the scored stream) is a multiple of 64 and of 320.
DOC_TARGETS = (40, 1, 150, 7, 300, 69, 73)


def multi_doc_stream(order: tuple[int, ...] | None = None) -> torch.Tensor:
    """Real val text cut into documents of DOC_TARGETS tokens after each BOS, ending on a BOS (the last
    document's final target), in the given order of documents."""
    text = load_val_tokens(find_shards(embedded.shards_dir(), "val"), 1, max_tokens=2000)
    text = text[text != BOS]
    pieces, at = [], 0
    for n in DOC_TARGETS:
        pieces.append(torch.cat((torch.tensor([BOS]), text[at:at + n - 1])) if n > 1 else torch.tensor([BOS]))
        at += n - 1
    order = order or tuple(range(len(pieces)))
    return torch.cat([pieces[i] for i in order] + [torch.tensor([BOS])])


def docs_plan(length: int = 64, stride: int = 32, **knobs) -> EvalPlan:
    return EvalPlan(length, stride, TTTConfig(mode="docs", **knobs))


def test_documents_tile_the_stream_targets():
    stream = torch.tensor([1, 5, 6, 1, 1, 7, 1, 8, 9, 1])
    docs = find_documents(stream, BOS, 9)
    assert docs.tolist() == [[0, 3], [3, 4], [4, 6], [6, 9]]  # a BOS right after a BOS: a 1-target document
    covered = torch.cat([torch.arange(s + 1, e + 1) for s, e in docs.tolist()])
    assert covered.tolist() == list(range(1, 10))
    no_bos_first = find_documents(torch.tensor([4, 5, 1, 6, 7]), BOS, 4)
    assert no_bos_first.tolist() == [[0, 2], [2, 4]]
    assert phase_bounds(50_000, 2000, 3) == [666, 1333, 2000, 50_000]  # the phased record's cuts
    assert phase_bounds(10, 4, 2) == [2, 4, 10] and phase_bounds(10, 0, 3) == [10] and phase_bounds(3, 9, 2) == [1, 3]


def test_chunk_windows_stay_inside_their_document():
    docs = find_documents(multi_doc_stream(), BOS, sum(DOC_TARGETS))
    plan = DocumentWindows(docs, 32, 64)
    for d, (s, e) in enumerate(docs.tolist()):
        scored = []
        for c in range(int(plan.chunks[d])):
            a, b, first = plan.window(d, c)
            assert s <= a and b <= e and b - a <= 64 and a < first <= b
            scored += range(first, b + 1)
        assert scored == list(range(s + 1, e + 1))  # each target once, in order


def test_one_document_is_the_sliding_window_score(table):
    # One document from position 0: its chunk windows see exactly the context sliding windows give.
    model = context_model()
    stream = load_val_tokens(find_shards(embedded.shards_dir(), "val"), 1, max_tokens=1025)
    stream = torch.cat((torch.tensor([BOS]), stream[1:][stream[1:] != BOS]))[:1025]
    alone = run_plan(model, stream, table, docs_plan(64, 16, lora_rank=0), batch_windows=8, device=CPU)
    sliding = evaluate(model, sliding_windows(stream, 64, 16), table, batch_windows=8, device=CPU)
    assert (alone.score.tokens, alone.score.bytes, alone.documents) == (sliding.tokens, sliding.bytes, 1)
    assert alone.score.nats_sum == pytest.approx(sliding.nats_sum, rel=1e-6)


@pytest.mark.parametrize("rank", [0, 4])
def test_reordering_documents_changes_nothing(table, rank):
    # Isolation: were any context, adapter or padding to cross a document boundary, the order would matter.
    model = context_model()
    plan = docs_plan(lora_rank=rank, doc_batch=3, lora_lr=0.02)
    first = run_plan(model, multi_doc_stream(), table, plan, batch_windows=8, device=CPU)
    shuffled = run_plan(model, multi_doc_stream((4, 2, 6, 0, 5, 1, 3)), table, plan, batch_windows=8, device=CPU)
    flat = evaluate(model, sliding_windows(multi_doc_stream(), 64, 32), table, batch_windows=8, device=CPU)
    assert (first.score.tokens, first.score.bytes) == (flat.tokens, flat.bytes) == (shuffled.score.tokens,
                                                                                    shuffled.score.bytes)
    assert first.documents == len(DOC_TARGETS) and first.guard["verified"]
    assert shuffled.score.nats_sum == pytest.approx(first.score.nats_sum, rel=1e-6)
    assert first.score.nats_sum != pytest.approx(flat.nats_sum, rel=1e-4)  # the flat stream crosses documents


# The default adapters, and the phased-TTT records' set with their AdamW (no momentum, weight decay).
RECORD_LORA = {"lora_targets": "q,k,v,o,mlp", "lora_beta1": 0.0, "lora_beta2": 0.999, "lora_wd": 1.0}


@pytest.mark.parametrize("knobs", [{}, RECORD_LORA], ids=["q,v", "records"])
def test_a_documents_score_does_not_depend_on_its_batch(table, knobs):
    model = context_model()
    one = run_plan(model, multi_doc_stream(), table, docs_plan(lora_rank=4, doc_batch=1, **knobs), batch_windows=8,
                   device=CPU)
    all_ = run_plan(model, multi_doc_stream(), table, docs_plan(lora_rank=4, doc_batch=7, **knobs), batch_windows=8,
                    device=CPU)
    assert one.score.nats_sum == pytest.approx(all_.score.nats_sum, rel=1e-6)
    assert one.updates > all_.updates > 0  # the batch shares its steps, not its adapters


@pytest.mark.parametrize("target", list(TARGETS))
def test_each_lora_target_adds_its_own_delta_to_its_modules_output(target):
    # q, k, v adapt a projection (W + A B); o and mlp a whole sub-layer, from its normed input to its output.
    model = context_model()
    lora = BatchedLoRA(model, 3, 2, targets=(target,))
    names = [n for n, _ in model.named_modules() if ("." + n).endswith("." + TARGETS[target])]
    assert sorted(lora.up) == sorted([key(n) for n in names] + ["head"]) and len(names) == model.config.num_layers
    ids = multi_doc_stream()[:32].view(2, 16)
    assert torch.equal(lora.logits(model, ids), model.project(model.hidden(ids)))  # B = 0: the base model
    module, seen = model.get_submodule(names[-1]), {}
    # Registered after the adapter's own hook, so it sees the adapted output.
    handle = module.register_forward_hook(lambda m, inputs, out: seen.update(x=inputs[0], out=out))
    with torch.no_grad():
        for up in lora.up.values():
            up.normal_()
        lora.rows = torch.tensor([1, 0])
        lora.logits(model, ids)
    handle.remove()
    down, up = lora.down[key(names[-1])][[1, 0]], lora.up[key(names[-1])][[1, 0]]
    with torch.no_grad():
        expected = module(seen["x"]) + seen["x"] @ down @ up
    assert torch.allclose(seen["out"], expected, atol=1e-5)


def test_adapters_start_as_the_base_model_and_then_adapt(table):
    model = context_model()
    stream = multi_doc_stream()
    base = run_plan(model, stream, table, docs_plan(lora_rank=0), batch_windows=8, device=CPU)
    # Stride = eval length = 320: every document is one chunk, scored before its adapter ever steps.
    single = [run_plan(model, stream, table, docs_plan(320, 320, lora_rank=r), batch_windows=8, device=CPU)
              for r in (0, 8)]
    assert single[1].score.nats_sum == single[0].score.nats_sum and single[1].updates == 0
    adapted = run_plan(model, stream, table, docs_plan(lora_rank=8, lora_lr=0.05), batch_windows=8, device=CPU)
    assert adapted.score.val_bpb < base.score.val_bpb  # a random model's head is badly calibrated: easy to adapt
    assert adapted.guard["adapter_positions_read"] > 0 and adapted.guard["positions_trained"] == 0


def test_phases_train_the_shared_weights_only_on_scored_documents(table):
    model = context_model()
    stream = multi_doc_stream()
    knobs = dict(lora_rank=0, prefix_docs=4, phases=2, lr=0.05, batch_seqs=2)
    still = run_plan(model, stream, table, docs_plan(epochs=0, **knobs), batch_windows=8, device=CPU)
    phased = run_plan(model, stream, table, docs_plan(epochs=1, **knobs), batch_windows=8, device=CPU)
    assert len(phased.phase_bpb) == 3 and phased.updates > 0
    assert phased.phase_bpb[0] == still.phase_bpb[0]  # the first phase is scored before any update
    assert phased.phase_bpb[1:] != still.phase_bpb[1:]
    docs = find_documents(stream, BOS, stream.numel() - 1)
    prefix_positions = int(sum(e - s + 1 for s, e in docs[:4].tolist()))  # inputs and targets of 4 documents
    assert phased.guard["positions_trained"] <= prefix_positions and phased.guard["verified"]
    both = run_plan(model, stream, table, docs_plan(epochs=1, **{**knobs, "lora_rank": 4}), batch_windows=8, device=CPU)
    # Adapters and phases together (the adapters are off while a phase trains the shared weights).
    assert both.phase_bpb[0] != still.phase_bpb[0] and both.guard["adapter_positions_read"] > 0
    assert both.updates > phased.updates and both.guard["positions_trained"] == phased.guard["positions_trained"]


def test_training_before_scoring_is_caught(table):
    model = context_model()
    stream = multi_doc_stream()
    docs = find_documents(stream, BOS, stream.numel() - 1)
    guard = ScoreFirstGuard(stream.numel(), CPU)
    sgd = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(ScoreFirstViolation, match="reads position 1, a target that has not been scored"):
        train_phase(model, sgd, stream, docs[:1], 64, TTTConfig(mode="docs", epochs=1), 0.01, guard, device=CPU,
                    rank=0, world_size=1, autocast_dtype=None)
    # An adapter that read a chunk may not score it; once reset, it has seen nothing.
    guard.scoring(torch.arange(1, 33), slot=0)
    guard.reading(0, 33, slot=0)
    with pytest.raises(ScoreFirstViolation, match="target position 20 is about to be scored"):
        guard.scoring(torch.arange(20, 40), slot=0)
    guard.scoring(torch.arange(33, 40), slot=1)  # another document's adapter never read it
    guard.reset_slot(0)
    guard.scoring(torch.arange(20, 33), slot=0)
    with pytest.raises(ScoreFirstViolation, match="not each scored exactly once"):
        guard.commit_scored(0, 41)


def test_lora_needs_a_head_split_and_bad_knobs_are_one_line_errors(table):
    model = context_model()

    class NoSplit(torch.nn.Module):
        variant = "nosplit"

    with pytest.raises(GolfError, match="splits its head off"):
        BatchedLoRA(NoSplit(), 4, 2)
    with pytest.raises(GolfError, match="lora_rank must be >= 0.*mode must be 'stream' or 'docs'"):
        TTTConfig(mode="doc", lora_rank=-1)
    with pytest.raises(GolfError, match="stride.*between 1 and the eval length"):
        score_documents(model, multi_doc_stream(), table, 64, 65, TTTConfig(mode="docs"), bos_id=BOS, device=CPU)


def test_a_byte_sidecar_counts_as_the_table_does_and_a_stream_without_bos_is_refused(table):
    model = context_model()
    stream = multi_doc_stream()
    sidecar = torch.cat((torch.zeros(1, dtype=torch.int64), window_bytes(table, stream[None])[0]))
    plan = docs_plan(lora_rank=4, doc_batch=3)
    by_table = run_plan(model, stream, table, plan, batch_windows=8, device=CPU)
    by_sidecar = run_plan(model, stream, table, plan, batch_windows=8, device=CPU, sidecar=sidecar)
    assert (by_sidecar.score.tokens, by_sidecar.score.bytes) == (by_table.score.tokens, by_table.score.bytes)
    assert by_sidecar.score.nats_sum == by_table.score.nats_sum and by_table.longest_document == max(DOC_TARGETS)
    doubled = run_plan(model, stream, table, plan, batch_windows=8, device=CPU, sidecar=2 * sidecar)
    assert doubled.score.bytes == 2 * by_table.score.bytes
    with pytest.raises(GolfError, match="holds no BOS"):
        run_plan(model, stream[stream != BOS][:641], table, plan, batch_windows=8, device=CPU)


def test_batches_go_to_the_least_loaded_rank():
    shares = balance([100, 90, 10, 10, 5, 80], 3)
    assert sorted(i for share in shares for i in share) == list(range(6))
    assert [sum([100, 90, 10, 10, 5, 80][i] for i in share) for share in shares] == [100, 100, 95]


def test_hostile_recorded_ttt_knobs_are_one_line_errors():
    # An artifact's manifest records the plan golf score runs by default: types and ranges are checked.
    for ttt, message in (({"epochs": "3"}, "epochs must be a int"), ({"mode": 7}, "mode must be a str"),
                         ({"doc_batch": 10**9}, "doc_batch must be at most 65,536"),
                         ({"phases": 10**12}, "phases must be at most 10,000"),
                         ({"lr": float("nan")}, "lr must be a float"),
                         ({"lora_targets": "q,x"}, "lora_targets must be distinct names from q,k,v,o,mlp"),
                         ({"lora_targets": "q,q"}, "lora_targets must be distinct"),
                         ({"lora_beta2": 1.0}, r"lora_beta2 must be in \[0, 1\)"),
                         ({"lora_wd": -1.0}, "lora_wd must be >= 0")):
        with pytest.raises(GolfError, match=message):
            plan_from_meta({"seq_len": 64, "stride": 32, "ttt": ttt})
    with pytest.raises(GolfError, match="are not whole numbers"):
        plan_from_meta({"seq_len": 64, "stride": "32"})
    with pytest.raises(GolfError, match="GiB of adapter state, over golf's 8 GiB bound"):
        BatchedLoRA(context_model(), 1 << 20, 64)


def test_the_trainer_runs_document_ttt_and_golf_score_reproduces_it(tmp_path, capsys):
    # TTT_* of docs mode reach the plan, the log and the artifact; golf score reruns the recorded plan.
    run_dir = tmp_path / "docs"
    env = {"ITERATIONS": "2", "MAX_WALLCLOCK_SECONDS": "0", "VAL_MAX_TOKENS": "4096", "EVAL_STRIDE": "32",
           "TTT_ENABLED": "1", "TTT_MODE": "docs", "TTT_LORA_RANK": "2", "TTT_LORA_TARGETS": "k,o,mlp",
           "TTT_LORA_BETA1": "0", "TTT_LORA_WD": "0.5", "TTT_PREFIX_DOCS": "2", "TTT_EPOCHS": "1"}
    proc = run_trainer(run_dir, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = read_result(run_dir)
    ttt = result["eval_plan"]["ttt"]
    assert (ttt["mode"], ttt["lora_targets"], ttt["lora_beta1"], ttt["lora_wd"]) == ("docs", "k,o,mlp", 0.0, 0.5)
    log = (run_dir / "train.log").read_text()
    assert "lora_targets=k,o,mlp" in log and "mode:docs documents:" in log
    assert result["evals"]["legal_ttt"]["score_first"]["adapter_positions_read"] > 0
    assert run_cli(["score", str(run_dir), "--max-tokens", "4096", "--json", "--no-progress"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["ttt"] == ttt and scored["val_bpb"] == pytest.approx(result["val_bpb"], abs=1e-5)
