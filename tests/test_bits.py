"""MODEL=bits: codes, the exact bitwise-AR head, the bit-diffusion ELBO, BitLM blocks, SpamLang."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import quant
from golf import codes, models
from golf.errors import GolfError
from golf.models.bit_heads import LambdaProposal, diffusion_elbo
from golf.models.bits import BitLM
from golf.score import model_from_artifact
from golf.toy_spamlang import SpamLangSetup, run_spamlang


def randomized(model: BitLM, seed: int = 0) -> BitLM:
    """The model with every weight random (zero-initialised output layers would make the head uniform)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return model.eval()


def bits_model(**overrides) -> BitLM:
    torch.manual_seed(0)
    return models.build("bits", BitLM.tiny_config(**overrides))


# ----------------------------------------------------------------------------- codes


def test_binary_codes_and_bits_put_the_root_bit_first():
    assert codes.code_bits(1024) == 10 and codes.code_bits(1000) == 10 and codes.code_bits(1025) == 11
    bits = codes.to_bits(torch.tensor([0, 1, 6]), 3)
    assert bits.tolist() == [[-1, -1, -1], [-1, -1, 1], [1, 1, -1]]


def test_hierarchical_codes_give_clusters_a_shared_prefix_and_are_deterministic():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 8, generator=generator) * 10
    cluster = torch.randperm(64, generator=generator) % 4  # 4 clusters of 16 tokens, ids shuffled
    vectors = centres[cluster] + torch.randn(64, 8, generator=generator) * 0.1
    table = codes.hierarchical_codes(vectors, 6)
    codes.check_codes(table, 64, 6)
    assert torch.equal(table, codes.hierarchical_codes(vectors.clone(), 6))
    prefixes = {c: set((table[cluster == c] >> 4).tolist()) for c in range(4)}
    assert all(len(p) == 1 for p in prefixes.values()) and len(set.union(*prefixes.values())) == 4


def test_hierarchical_codes_fit_a_vocabulary_that_is_not_a_power_of_two():
    table = codes.hierarchical_codes(torch.randn(1000, 5, generator=torch.Generator().manual_seed(1)))
    codes.check_codes(table, 1000, 10)
    with pytest.raises(GolfError, match="same code"):
        codes.check_codes(torch.zeros(4, dtype=torch.int64), 4, 2)


def test_cooccurrence_codes_come_from_training_tokens_deterministically():
    generator = torch.Generator().manual_seed(2)
    # Two "languages" that never mix: ids 0-15 follow each other, ids 16-31 follow each other.
    stream = torch.cat([torch.randint(16 * (i % 2), 16 * (i % 2 + 1), (50,), generator=generator)
                        for i in range(200)])
    vectors = codes.cooccurrence_vectors(stream, 32, dim=4)
    table = codes.hierarchical_codes(vectors, 5)
    assert torch.equal(vectors, codes.cooccurrence_vectors(stream, 32, dim=4))
    assert len(set((table[:16] >> 4).tolist())) == 1 and len(set((table[16:] >> 4).tolist())) == 1
    with pytest.raises(GolfError, match=r"\[0, 8\)"):
        codes.cooccurrence_vectors(stream, 8)


def test_tree_branches_mark_the_branches_that_lead_to_tokens():
    branches = codes.tree_branches(torch.arange(5), 3)  # codes 000..100: node "1" has only child "10"
    assert branches[0].tolist() == [True, True]  # root: 0xx and 1xx both hold tokens
    assert branches[2].tolist() == [True, False]  # prefix 1: only 10x
    assert branches[5].tolist() == [True, False]  # prefix 10: only 100
    assert codes.tree_nodes(torch.tensor([4]), 3).tolist() == [[0, 2, 5]]


# ----------------------------------------------------------------------------- exact bitwise-AR head


@pytest.mark.parametrize("vocab,block", [(50, 1), (64, 1), (6, 2)])
def test_bitwise_ar_probabilities_sum_to_one_over_the_vocabulary(vocab, block):
    model = randomized(bits_model(vocab_size=vocab, block=block))
    context = torch.tensor([3, 1, 4, 1, 5])[: block + 1]  # 2·block targets; the last block is enumerated
    blocks = torch.tensor(list(itertools.product(range(vocab), repeat=block)))
    windows = torch.cat((context.expand(len(blocks), -1), blocks), dim=1)
    with torch.no_grad():
        out = model.score(windows)
    assert out.label == "exact" and out.stderr is None
    last_block = out.nats[:, -block:].double().sum(1)
    assert torch.exp(-last_block).sum().item() == pytest.approx(1.0, abs=1e-5)
    assert last_block.std() > 0.1  # a real distribution, not the uniform one


def test_forced_bits_cost_nothing_and_generation_yields_only_real_tokens():
    model = randomized(bits_model(vocab_size=5))  # 3 bits, codes 5-7 are no token
    generated = model.generate(torch.tensor([[1, 2]]), 40, generator=torch.Generator().manual_seed(0))
    assert generated.shape == (1, 42) and generated.max() < 5
    greedy = model.generate(torch.tensor([[1, 2]]), 5, temperature=0.0)
    assert torch.equal(greedy, model.generate(torch.tensor([[1, 2]]), 5, temperature=0.0))


# ----------------------------------------------------------------------------- bit diffusion ELBO


def bayes_denoiser(p: torch.Tensor, code_bits: torch.Tensor):
    """E[x | z] under a known categorical p over the codes (rows of code_bits, ±1)."""
    def denoise(z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        alpha, sigma2 = torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam)
        weights = torch.softmax(p.log()[None] + (z @ code_bits.T) * (alpha / sigma2)[:, None], dim=-1)
        return weights @ code_bits
    return denoise


def test_elbo_with_the_bayes_optimal_denoiser_equals_minus_log2_p():
    n = 4
    generator = torch.Generator().manual_seed(0)
    p = torch.distributions.Dirichlet(torch.full((1 << n,), 0.5)).sample().double()
    table = codes.to_bits(torch.arange(1 << n), n).double()
    proposal = LambdaProposal(-8.0, 5.0)
    draws = 80_000
    for code in (int(p.argmax()), int(p.argmin())):
        x = table[code].expand(draws, n)
        u = (torch.randperm(draws, generator=generator) + torch.rand(draws, generator=generator)) / draws
        eps, eps_recon = (torch.randn(draws, n, generator=generator, dtype=torch.float64) for _ in range(2))
        est = diffusion_elbo(bayes_denoiser(p, table), x, proposal.sample(u.double()), eps, eps_recon, proposal)
        mean, stderr = est.mean().item() / math.log(2), est.std().item() / math.sqrt(draws) / math.log(2)
        truth = -math.log2(p[code].item())
        assert abs(mean - truth) < 4 * stderr + 0.01, (code, mean, stderr, truth)
        assert stderr < 0.1  # tight enough to catch a 0.4-bit error


def test_elbo_is_an_upper_bound_for_a_poor_denoiser():
    n, draws = 3, 20_000
    generator = torch.Generator().manual_seed(1)
    x = codes.to_bits(torch.full((draws,), 5), n).double()
    proposal = LambdaProposal(-8.0, 5.0)
    lam = proposal.sample(torch.rand(draws, generator=generator, dtype=torch.float64))
    eps, eps_recon = (torch.randn(draws, n, generator=generator, dtype=torch.float64) for _ in range(2))
    uniform = diffusion_elbo(lambda z, l: torch.zeros_like(z), x, lam, eps, eps_recon, proposal)
    assert uniform.mean().item() / math.log(2) > n + 0.5  # worse than the uniform code's n bits


def test_diffusion_score_is_a_reproducible_bound_with_a_standard_error():
    model = randomized(bits_model(head="diffusion"))
    windows = torch.randint(0, 64, (3, 17), generator=torch.Generator().manual_seed(0))

    def score(seed: int, samples: int):
        with torch.no_grad():
            return model.score(windows, generator=torch.Generator().manual_seed(seed), samples=samples)

    first, again, other = score(7, 2), score(7, 2), score(8, 2)
    assert first.label == "bound" and first.nats.shape == (3, 16)
    assert torch.equal(first.nats, again.nats) and not torch.equal(first.nats, other.nats)
    assert (first.stderr > 0).all() and (score(7, 1).stderr > 0).all()
    generated = model.generate(windows[:, :3], 6, generator=torch.Generator().manual_seed(0))
    assert generated.shape == (3, 9) and generated.max() < 64


# ----------------------------------------------------------------------------- blocks, roles, artifact


def test_block_mode_runs_the_backbone_once_per_k_tokens():
    model = randomized(bits_model(block=4))
    calls = []
    model.blocks[0].register_forward_hook(lambda module, args, out: calls.append(out.shape[1]))
    out = model.generate(torch.tensor([[5, 6, 7]]), 8, temperature=0.0)
    assert out.shape == (1, 11) and calls == [1, 1]  # the prompt's block, then the first 4 new tokens'
    with pytest.raises(GolfError, match="divisible by 4"):
        model.loss(torch.randint(0, 64, (2, 15)))


def test_block_targets_see_only_earlier_blocks():
    model = randomized(bits_model(block=4))
    windows = torch.randint(0, 64, (1, 17), generator=torch.Generator().manual_seed(3))
    changed = windows.clone()
    changed[0, 8] = (changed[0, 8] + 1) % 64  # a target of block 1 (targets 5..8): input of block 2 only
    with torch.no_grad():
        a, b = model.score(windows).nats, model.score(changed).nats
    assert torch.equal(a[0, :4], b[0, :4])  # block 0 does not see it
    assert torch.equal(a[0, 4:7], b[0, 4:7])  # inside block 1, earlier tokens do not see it either
    assert not torch.equal(a[0, 8:], b[0, 8:])  # block 2 does


def test_roles_give_the_bit_embedding_and_heads_their_groups_and_codes_are_stored_raw(tmp_path):
    model = bits_model()
    roles = model.checked_roles()
    assert roles["bit_emb.weight"] == "bits" and roles["codes"] == "codes"
    assert {roles[n] for n in roles if n.startswith("head.")} == {"bithead"}
    groups = {g: {id(p) for p in ps} for g, ps in model.param_groups().items()}
    assert id(model.bit_emb.weight) in groups["embed"] and id(model.head.inp.weight) in groups["head"]
    assert not any(n.startswith("tok_emb") for n in model.state_dict())  # no V×d table
    with torch.no_grad():
        model.codes.copy_(codes.hierarchical_codes(torch.randn(64, 3)))
    model._refresh_code_tables()
    path = tmp_path / "bits.golf"
    meta = {"model": {"variant": "bits", "config": model.config_dict()}}
    quant.write_artifact(path, model.state_dict(), rule="bits=int6", roles=roles, meta=meta)
    stored = quant.read_quantized(path)
    assert stored.tensors["codes"].scheme == "raw" and stored.tensors["bit_emb.weight"].scheme == "int6"
    loaded = model_from_artifact(meta, quant.read_artifact(path).state_dict)
    assert torch.equal(loaded.codes, model.codes) and torch.equal(loaded.token_bits, model.token_bits)


def test_cooc_codes_are_built_from_train_tokens_by_fit_to_train():
    model = bits_model(code="cooc", code_tokens=4000)
    asked = []

    def take(n: int) -> torch.Tensor:
        asked.append(n)
        return torch.randint(0, 64, (n,), generator=torch.Generator().manual_seed(0))

    report = model.fit_to_train(take)
    assert asked == [4000] and report["code"] == "cooc" and report["bits"] == 6
    assert model.codes.dtype == torch.int32 and not torch.equal(model.codes, codes.binary_codes(64).int())
    assert torch.equal(model.token_bits, codes.to_bits(model.codes, 6))
    assert bits_model().fit_to_train(take) == {} and asked == [4000]  # binary codes need no data


def test_emb_codes_come_from_another_artifacts_token_embedding(tmp_path):
    torch.manual_seed(0)
    ar = models.build("ar", {"vocab_size": 64, "num_layers": 1, "model_dim": 16, "num_heads": 2, "num_kv_heads": 1})
    path = tmp_path / "ar.golf"
    quant.write_artifact(path, ar.state_dict(), rule="fp32", roles=ar.checked_roles(),
                         meta={"model": {"variant": "ar", "config": ar.config_dict()}})
    model = bits_model(code="emb", code_from=str(path))
    assert model.fit_to_train(lambda n: pytest.fail("CODE=emb reads no train tokens"))["code"] == "emb"
    expected = codes.hierarchical_codes(ar.tok_emb.weight.detach(), 6)
    assert torch.equal(model.codes, expected.int())


def test_bad_settings_are_one_line_errors():
    with pytest.raises(GolfError, match="HEAD must be one of ar, diffusion"):
        models.config_from_env("bits", {"HEAD": "softmax"})
    with pytest.raises(GolfError, match="CODE=emb needs CODE_FROM"):
        models.config_from_env("bits", {"CODE": "emb"})


# ----------------------------------------------------------------------------- SpamLang


def test_spamlang_quick_bit_embedding_copies_unseen_ids_and_untied_vanilla_does_not():
    report = run_spamlang(SpamLangSetup(vocab=512, steps=150, eval_sequences=64), ["bits-ar", "vanilla-untied"])
    bits, vanilla = report["models"]["bits-ar"], report["models"]["vanilla-untied"]
    assert bits["copy_acc_unseen"] >= 0.95 and bits["bits_per_token_unseen"] < 0.1
    assert vanilla["copy_acc_seen"] >= 0.9 and vanilla["copy_acc_unseen"] <= 0.05


@pytest.mark.slow
def test_spamlang_ci_size():
    """The issue's CI-size check: V=4096, L=16, 2×64 backbone, both bit models vs untied vanilla."""
    report = run_spamlang(SpamLangSetup(steps=400, eval_sequences=128),
                          ["bits-ar", "bits-diffusion", "vanilla-untied"])["models"]
    for name in ("bits-ar", "bits-diffusion"):
        assert report[name]["copy_acc_unseen"] >= 0.95, report[name]
        assert report[name]["bits_per_token_unseen"] < 0.1, report[name]
    assert report["bits-diffusion"]["label"] == "bound" and report["bits-diffusion"]["bits_stderr_unseen"] > 0
    assert report["vanilla-untied"]["copy_acc_seen"] >= 0.9 and report["vanilla-untied"]["copy_acc_unseen"] <= 0.05


def test_golf_budget_counts_the_bit_model_by_its_roles(capsys):
    from conftest import run_cli

    run_cli(["budget", "--model", "bits", "--vocab-size", "8192", "--no-search"])
    out = capsys.readouterr().out
    assert "token embedding                           0" in out
    assert "bits (family role)                    6,656" in out and "bithead (family role)" in out
