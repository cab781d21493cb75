"""The masked-diffusion family (golf/models/mdlm.py): its bound and its chain rule checked against
toys small enough to enumerate, then the real model through the trainer, `golf score`, the budget,
the quantizer and `golf pack`.

The toys are MDLM itself with `logits` replaced by a table over every noisy input (vocabulary 3, 3
targets: 4³ inputs), so the scoring code under test is the shipped one and the truth is exact.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
import sys

import pytest
import torch

import quant
from conftest import REPO, TINY_TRAIN_ENV, read_result, run_cli, run_trainer
from golf import models
from golf.budget import compute
from golf.calibrate import collect_hessians
from golf.errors import GolfError
from golf.launch import train_env
from golf.models.mdlm import MDLM, MDLMConfig
from golf.score import model_from_artifact

V, T = 3, 3  # toy vocabulary and targets; position 0 holds the visible token 0
SEQUENCES = [list(x) for x in itertools.product(range(V), repeat=T)]


class TableMDLM(MDLM):
    """MDLM whose conditionals come from a table: log_q[input index, position, token]."""

    def __init__(self, log_q: torch.Tensor, **config) -> None:
        super().__init__(MDLMConfig(vocab_size=V, num_layers=1, model_dim=8, num_heads=2, num_kv_heads=1, **config))
        self.log_q = log_q

    def logits(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        index = (z[:, 1:] * (V + 1) ** torch.arange(T)).sum(1)
        return torch.cat((torch.zeros(z.size(0), 1, V, dtype=torch.float64), self.log_q[index]), dim=1)


def noisy_inputs():
    """Every noisy target sequence z ∈ {0..V}^T (V = the mask) with its table index."""
    for z in itertools.product(range(V + 1), repeat=T):
        yield sum(v * (V + 1) ** i for i, v in enumerate(z)), z


def true_conditionals(p: dict[tuple, float]) -> torch.Tensor:
    """The table of the joint `p`'s own conditionals p(x_i | visible part of z) (uniform where
    position i is visible: SUBS never scores it)."""
    log_q = torch.full(((V + 1) ** T, T, V), -math.log(V), dtype=torch.float64)
    for index, z in noisy_inputs():
        agree = {x: w for x, w in p.items() if all(zi in (V, xi) for zi, xi in zip(z, x))}
        for i in (i for i in range(T) if z[i] == V):
            mass = torch.tensor([sum(w for x, w in agree.items() if x[i] == v) for v in range(V)], dtype=torch.float64)
            log_q[index, i] = (mass / mass.sum()).log()
    return log_q


def index_of(z: list[int]) -> int:
    return sum(v * (V + 1) ** i for i, v in enumerate(z))


def exact_nelbo(log_q: torch.Tensor, x: list[int]) -> float:
    """E over hidden sets S (|S| = l with weight 1/l, uniform among the C(T, l) sets): Σ_{i∈S} −log q(x_i | z_S)."""
    total = 0.0
    for size in range(1, T + 1):
        for hidden in itertools.combinations(range(T), size):
            z = [V if i in hidden else x[i] for i in range(T)]
            nats = sum(-float(log_q[index_of(z), i, x[i]]) for i in hidden)
            total += nats / size / math.comb(T, size)
    return total


def order_code_length(log_q: torch.Tensor, x: list[int], order: tuple[int, ...]) -> float:
    """−log Π_i q(x_σi | x revealed so far), revealing positions in `order`."""
    z, nats = [V] * T, 0.0
    for i in order:
        nats -= float(log_q[index_of(z), i, x[i]])
        z[i] = x[i]
    return nats


def windows(xs: list[list[int]]) -> torch.Tensor:
    return torch.tensor([[0, *x] for x in xs])


@pytest.fixture(scope="module")
def joint() -> dict[tuple, float]:
    g = torch.Generator().manual_seed(0)
    w = torch.rand(V ** T, generator=g, dtype=torch.float64) ** 3  # cubed: some sequences much likelier than others
    w = w / w.sum()
    return {tuple(x): float(w[k]) for k, x in enumerate(SEQUENCES)}


@pytest.fixture(scope="module")
def arbitrary() -> torch.Tensor:
    """Conditionals of no joint at all: random normalised tables."""
    g = torch.Generator().manual_seed(1)
    return torch.log_softmax(2 * torch.randn((V + 1) ** T, T, V, generator=g, dtype=torch.float64), dim=-1)


def test_with_true_conditionals_the_nelbo_and_the_chain_rule_are_exactly_minus_log_p(joint):
    log_q = true_conditionals(joint)
    chain = TableMDLM(log_q, mdlm_score="chain").score(windows(SEQUENCES))
    assert chain.label == "exact" and chain.passes == T
    for x, nats in zip(SEQUENCES, chain.nats.sum(1).tolist()):
        assert nats == pytest.approx(-math.log(joint[tuple(x)]), abs=1e-5)  # float32 cross-entropy
        assert exact_nelbo(log_q, x) == pytest.approx(-math.log(joint[tuple(x)]), abs=1e-9)


def test_the_nelbo_bounds_minus_log_p_of_the_model_it_defines(arbitrary):
    """The model samples by revealing positions in a uniformly random order from q; its −log p is
    −log of the mean over orders, the NELBO the mean of −log: Jensen makes it a bound, strictly here."""
    gaps = []
    for x in SEQUENCES:
        lengths = [order_code_length(arbitrary, x, order) for order in itertools.permutations(range(T))]
        minus_log_p = -math.log(sum(math.exp(-n) for n in lengths) / len(lengths))
        nelbo = exact_nelbo(arbitrary, x)
        assert nelbo == pytest.approx(sum(lengths) / len(lengths), abs=1e-9)  # the NELBO is the order average
        gaps.append(nelbo - minus_log_p)
    assert min(gaps) >= 0 and max(gaps) > 0.05


def test_the_chain_score_is_the_left_to_right_code_length_and_normalised(arbitrary):
    one = TableMDLM(arbitrary, mdlm_score="chain").score(windows(SEQUENCES)).nats.sum(1)
    expected = [order_code_length(arbitrary, x, tuple(range(T))) for x in SEQUENCES]
    assert one.tolist() == pytest.approx(expected, abs=1e-5)
    two = TableMDLM(arbitrary, mdlm_score="chain", mdlm_chain_k=2).score(windows(SEQUENCES))
    assert two.passes == 2 and two.label == "exact"
    assert torch.exp(-two.nats.double().sum(1)).sum().item() == pytest.approx(1.0, abs=1e-5)  # a distribution over V^T


@pytest.mark.parametrize("samples", [2, 5])
def test_the_monte_carlo_nelbo_matches_its_exact_expectation(arbitrary, samples):
    model = TableMDLM(arbitrary)
    for x in ([0, 1, 2], [2, 2, 0]):
        rows = 4000
        out = model.score(windows([x] * rows), generator=torch.Generator().manual_seed(3), samples=samples)
        assert out.label == "bound" and out.passes == samples and out.stderr.shape == (rows,)
        sums = out.nats.sum(1)
        standard_error = math.sqrt(out.stderr.square().sum().item()) / rows
        assert abs(sums.mean().item() - exact_nelbo(arbitrary, x)) < 3 * standard_error
        # The per-row error is conservative: it never claims less spread than the rows show.
        assert out.stderr.square().mean().item() >= 0.8 * sums.var().item()


def test_a_seed_reproduces_the_draws_and_another_seed_changes_them():
    model = models.build("mdlm", MDLM.tiny_config())
    tokens = torch.randint(0, 64, (3, 17), generator=torch.Generator().manual_seed(0))

    def score(seed: int):
        return model.score(tokens, generator=torch.Generator().manual_seed(seed), samples=3)

    first, again, other = score(5), score(5), score(6)
    assert torch.equal(first.nats, again.nats) and torch.equal(first.stderr, again.stderr)
    assert not torch.equal(first.nats, other.nats) and bool((first.stderr > 0).all())
    with pytest.raises(GolfError, match="at least 2 Monte Carlo samples"):
        model.score(tokens, samples=1)


def test_the_mask_is_reserved_never_predicted_and_roles_cover_every_tensor():
    model = models.build("mdlm", {**vars(MDLM.tiny_config()), "time_conditioning": True})
    assert model.vocab_size == 65 and model.mask_id == 64 and model.tok_emb.weight.shape[0] == 65
    assert model.logits(torch.full((1, 5), 64), torch.ones(1)).shape == (1, 5, 64)  # no logit for the mask
    roles = model.checked_roles()
    assert roles["time_emb"] == "time" and roles["tok_emb.weight"] == "emb"
    groups = {g: {id(p) for p in ps} for g, ps in model.param_groups().items()}
    assert id(model.time_emb) in groups["scalar"] and all(p.ndim == 2 for p in model.param_groups()["matrix"])
    assert all(not block.attn.causal for block in model.blocks)
    with pytest.raises(GolfError, match="config for variant .mdlm.: mdlm_score must be one of"):
        models.config_from_env("mdlm", {"MDLM_SCORE": "pll"})


def test_generation_unmasks_every_position_and_keeps_the_prompt():
    torch.manual_seed(0)
    model = models.build("mdlm", MDLM.tiny_config())
    prompt = torch.randint(0, 64, (2, 3))
    out = model.generate(prompt, 10, generator=torch.Generator().manual_seed(1), steps=4, block=4)
    assert out.shape == (2, 13) and torch.equal(out[:, :3], prompt) and int(out.max()) < 64
    greedy = model.generate(prompt, 10, temperature=0, top_k=5)
    assert torch.equal(greedy, model.generate(prompt, 10, temperature=0, top_k=5))


def test_budget_counts_bidirectional_attention_in_full():
    shape = {"num_layers": 2, "model_dim": 64, "num_heads": 4, "num_kv_heads": 2}
    with torch.device("meta"):
        ar, mdlm = models.build("ar", shape), models.build("mdlm", shape)
    a, m = compute(ar, ar.config, 128, 4096, 0.4), compute(mdlm, mdlm.config, 128, 4096, 0.4)
    assert (a["attention_factor"], m["attention_factor"]) == (6, 12)
    assert m["matmul_params"] == a["matmul_params"] + 64  # the tied table has the mask's row too
    assert m["attention_flops_per_token"] == 12 * 2 * 128 * 64 and m["formula"] == "6*N_matmul + 12*L*T*D"


@pytest.mark.parametrize("rule", ["int8", "fp16", "int6", "emb=int4g32,attn=int5,mlp=int4",
                                  "emb=int8,attn=int4,mlp=int4,gptq=1", "emb=int8,time=int6,other=int8"])
def test_every_quant_rule_round_trips_an_mdlm(rule, tmp_path):
    torch.manual_seed(0)
    config = {**vars(MDLM.tiny_config()), "model_dim": 64, "num_heads": 4, "num_kv_heads": 2, "time_conditioning": True}
    model = models.build("mdlm", config)
    roles = model.checked_roles()
    tokens = torch.randint(0, 64, (4, 33))
    hessians = collect_hessians(model, [tokens], device=torch.device("cpu"))[0] if "gptq" in rule else None
    meta = {"model": {"variant": "mdlm", "config": model.config_dict()}}
    quant.write_artifact(tmp_path / "m.golf", model.state_dict(), rule=rule, roles=roles, meta=meta,
                         compressor="zlib-9", hessians=hessians)
    loaded = quant.read_artifact(tmp_path / "m.golf")
    again = model_from_artifact(loaded.meta, loaded.state_dict)
    out = again.score(tokens, generator=torch.Generator().manual_seed(0), samples=2)
    assert out.label == "bound" and bool(torch.isfinite(out.nats).all())


# ----------------------------------------------------------------------------- the real pipeline


@pytest.fixture(scope="module")
def mdlm_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("mdlm") / "run"
    proc = run_trainer(run_dir, {"MODEL": "mdlm", "ITERATIONS": "4", "MAX_WALLCLOCK_SECONDS": "0",
                                 "VAL_LOSS_EVERY": "2", "EVAL_SAMPLES": "2"}, nproc=2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir


def score_json(capsys, run_dir, *flags: str) -> dict:
    assert run_cli(["score", str(run_dir), "--json", "--no-progress", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_golf_score_of_an_mdlm_states_its_estimator_and_reproduces(mdlm_run, trained_run, capsys):
    result = read_result(mdlm_run)
    assert result["model"] == "mdlm" and result["label"] == "bound" and result["samples"] == 2
    assert run_cli(["score", str(mdlm_run), "--max-tokens", "4097", "--no-progress", "--seed", "9"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"val_bpb +\d\.\d+ \(bound\) ± \d\.\d+ \(1 s\.e\.\)", text)
    assert "monte carlo seed 9, 2 sample(s) per window" in text and "2 forward pass(es) per window" in text
    first = score_json(capsys, mdlm_run, "--max-tokens", "4097", "--seed", "9")
    again = score_json(capsys, mdlm_run, "--max-tokens", "4097", "--seed", "9")
    timings = ("seconds", "tokens_per_s", "eval_phases_seconds", "total_eval_seconds")
    assert first == {**again, **{k: first[k] for k in timings}}
    assert first["val_bpb_stderr"] > 0 and first["seed"] == 9 and first["samples"] == 2
    ar = score_json(capsys, trained_run, "--max-tokens", "4097")
    assert ar["label"] == "exact" and first["tokens"] == 4096  # 64 windows of 64 targets
    assert (ar["tokens"], ar["bytes"]) == (first["tokens"], first["bytes"])  # the same byte table, the same targets
    # The trainer's own number, reproduced from the artifact's recorded seed, samples and batch.
    default = score_json(capsys, mdlm_run, "--max-tokens", str(result["tokens"] + 1))
    assert default["val_bpb"] == pytest.approx(result["val_bpb"], rel=1e-12)


def test_golf_score_chain_is_exact_and_counts_its_passes(mdlm_run, trained_run, capsys):
    chain = score_json(capsys, mdlm_run, "--max-tokens", "1025", "--mdlm-score", "chain", "--mdlm-chain-k", "8")
    assert chain["label"] == "exact" and chain["val_bpb_stderr"] is None and chain["forward_passes_per_window"] == 8
    assert chain["options"] == {"mdlm_score": "chain", "mdlm_chain_k": 8} and chain["tokens"] == 1024
    with pytest.raises(GolfError, match="model 'ar' has no option mdlm_score"):
        run_cli(["score", str(trained_run), "--mdlm-score", "chain"])


def test_an_mdlm_with_one_eval_sample_fails_before_training(tmp_path):
    env = train_env(tmp_path / "run", {**TINY_TRAIN_ENV, "MODEL": "mdlm", "ITERATIONS": "50",
                                       "MAX_WALLCLOCK_SECONDS": "0"})
    proc = subprocess.run([sys.executable, str(REPO / "train_gpt.py")], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "step:1/" not in proc.stdout
    assert re.search(r"train_gpt\.py: error: the MDLM NELBO needs at least 2 .* got 1 \(set EVAL_SAMPLES", proc.stderr)
    assert "Traceback" not in proc.stderr


def test_golf_pack_packs_an_mdlm_run_whose_packed_trainer_trains_mdlm_alone(mdlm_run, tmp_path, capsys):
    assert run_cli(["pack", str(mdlm_run), "--name", "mdlm smoke", "--author", "golf tests", "--github-id", "golf",
                    "--track", "non_record_16mb", "--out", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["smoke"]["model"] == "mdlm" and report["smoke"]["label"] == "bound"
    assert report["submission"]["label"] == "bound"
