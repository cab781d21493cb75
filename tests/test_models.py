"""The AR baseline: exact official size, a consistent score, and KV-cached generation."""

from __future__ import annotations

import pytest
import torch

from golf import models
from golf.errors import GolfError
from golf.models.ar import ARConfig

TINY = dict(vocab_size=64, num_layers=3, model_dim=32, num_heads=4, num_kv_heads=2)


def test_official_default_has_exactly_the_logged_parameter_count():
    model = models.build("ar", {})
    assert sum(p.numel() for p in model.parameters()) == 17_059_912
    groups = model.param_groups()
    assert len(groups["matrix"]) == 54  # q, k, v, proj, fc, mlp.proj in 9 blocks
    assert [p.shape for p in groups["embed"]] == [torch.Size([1024, 512])]
    assert groups["head"] == []


def test_official_init():
    torch.manual_seed(0)
    model = models.build("ar", ARConfig(vocab_size=1024, num_layers=2, model_dim=512))
    std = model.tok_emb.weight.std().item()
    assert 0.0045 < std < 0.0055  # tied embedding init std 0.005
    for block in model.blocks:
        assert torch.count_nonzero(block.attn.proj.weight) == 0
        assert torch.count_nonzero(block.mlp.proj.weight) == 0
        assert torch.equal(block.attn.q_gain, torch.full((8,), 1.5))


def test_untied_head_is_zero_init_and_grouped():
    model = models.build("ar", dict(TINY, tie_embeddings=False))
    assert torch.count_nonzero(model.lm_head.weight) == 0
    assert len(model.param_groups()["head"]) == 1


def test_score_is_exact_and_sums_to_the_loss():
    torch.manual_seed(0)
    model = models.build("ar", TINY)
    tokens = torch.randint(0, 64, (3, 17))
    out = model.score(tokens)
    assert out.label == "exact" and out.nats.shape == (3, 16) and out.stderr is None
    torch.testing.assert_close(out.nats.mean(), model.loss(tokens))


def test_score_is_causal():
    torch.manual_seed(0)
    model = models.build("ar", TINY)
    for p in model.parameters():  # make the zero-init projections matter
        p.data.normal_(0, 0.2)
    tokens = torch.randint(0, 64, (1, 12))
    changed = tokens.clone()
    changed[0, 8] = (changed[0, 8] + 1) % 64
    a, b = model.score(tokens).nats, model.score(changed).nats
    torch.testing.assert_close(a[0, :7], b[0, :7])  # targets 1..7 only see tokens 0..6
    assert not torch.allclose(a[0, 7:], b[0, 7:])


def test_generate_with_kv_cache_matches_full_recompute():
    torch.manual_seed(0)
    model = models.build("ar", TINY).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.3)
    prompt = torch.randint(0, 64, (2, 5))
    fast = model.generate(prompt, 8, temperature=0)
    slow = prompt
    with torch.no_grad():
        for _ in range(8):
            nxt = model.logits(slow)[:, -1].argmax(-1, keepdim=True)
            slow = torch.cat((slow, nxt), dim=1)
    assert torch.equal(fast, slow)
    sampled = model.generate(prompt, 4, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(1))
    assert sampled.shape == (2, 9) and torch.equal(sampled[:, :5], prompt)


def test_config_from_env_and_errors():
    cfg = models.config_from_env("ar", {"NUM_LAYERS": "6", "MODEL_DIM": "256", "TIE_EMBEDDINGS": "0"})
    assert (cfg.num_layers, cfg.model_dim, cfg.tie_embeddings, cfg.num_heads) == (6, 256, False, 8)
    with pytest.raises(GolfError, match="NUM_LAYERS"):
        models.config_from_env("ar", {"NUM_LAYERS": "six"})
    with pytest.raises(GolfError, match="unknown model variant"):
        models.build("nope", {})
    with pytest.raises(GolfError, match="unknown fields"):
        models.build("ar", {"model_dimm": 3})
    assert "ar" in models.variant_names()
