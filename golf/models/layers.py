"""Transformer pieces shared by the model families (the official baseline's modules).

Norms are parameter-free RMSNorm, attention is GQA with QK-norm, RoPE and a learned per-head
query gain, the MLP is relu². Linear weights stay fp32 and are cast to the activation dtype at
each matmul, so bf16 autocast on GPU computes in bf16 while the optimizer updates fp32 weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# A forward-pass rounding of a weight to a quantization grid (QAT), set by golf.qat.enable_qat.
FakeQuant = Callable[[torch.Tensor], torch.Tensor]

# enable_gqa arrived in torch 2.5; older builds get the same result by repeating K/V heads.
_SDPA_HAS_GQA = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 5)


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


class CastedLinear(nn.Linear):
    """A bias-free linear layer whose fp32 weight is cast to the input dtype per matmul."""

    def __init__(self, in_features: int, out_features: int, *, zero_init: bool = False) -> None:
        super().__init__(in_features, out_features, bias=False)
        self.fake_quant: FakeQuant | None = None  # set by golf.qat.enable_qat
        if zero_init:
            nn.init.zeros_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.fake_quant is None else self.fake_quant(self.weight)
        return F.linear(x, weight.to(x.dtype))


class TiedEmbedding(nn.Embedding):
    """A token embedding whose table can also serve as the LM head, fake-quantized under QAT
    for both uses at once (the artifact stores it once, so it is rounded once)."""

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.fake_quant: FakeQuant | None = None  # set by golf.qat.enable_qat

    def table(self) -> torch.Tensor:
        return self.weight if self.fake_quant is None else self.fake_quant(self.weight)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.table())


class Rotary(nn.Module):
    """Rotary position embedding tables (full head dim, half-split), cached per length."""

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        # Not a buffer: a buffer would be cast to bf16 with the model, and bf16 positions round
        # off beyond 256. The tables are always built in fp32.
        self.inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self._cache: tuple[int, torch.device, torch.Tensor, torch.Tensor] | None = None

    def forward(self, start: int, length: int, device: torch.device,
                dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        end = start + length
        if self._cache is None or self._cache[0] < end or self._cache[1] != device:
            positions = torch.arange(end, dtype=torch.float32, device=device)
            freqs = torch.outer(positions, self.inv_freq.to(device))
            self._cache = (end, device, freqs.cos()[None, None], freqs.sin()[None, None])
        _, _, cos, sin = self._cache
        return cos[:, :, start:end].to(dtype), sin[:, :, start:end].to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class KVCache:
    """Keys and values seen so far, one entry per attention layer, for incremental decoding."""

    def __init__(self) -> None:
        self.layers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.length = 0

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if layer in self.layers:
            old_k, old_v = self.layers[layer]
            k, v = torch.cat((old_k, k), dim=2), torch.cat((old_v, v), dim=2)
        self.layers[layer] = (k, v)
        return k, v


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, rope_base: float,
                 qk_gain_init: float, *, causal: bool = True) -> None:
        super().__init__()
        if dim % num_heads or num_heads % num_kv_heads:
            raise ValueError(f"model_dim {dim} / num_heads {num_heads} / num_kv_heads {num_kv_heads} do not divide")
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = dim // num_heads
        if self.head_dim % 2:
            raise ValueError(f"head dim {self.head_dim} must be even for RoPE")
        kv_dim = num_kv_heads * self.head_dim
        self.causal = causal
        self.c_q = CastedLinear(dim, dim)
        self.c_k = CastedLinear(dim, kv_dim)
        self.c_v = CastedLinear(dim, kv_dim)
        self.proj = CastedLinear(dim, dim, zero_init=True)
        self.q_gain = nn.Parameter(torch.full((num_heads,), qk_gain_init, dtype=torch.float32))
        self.rotary = Rotary(self.head_dim, rope_base)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        bsz, seqlen, dim = x.shape
        q = self.c_q(x).reshape(bsz, seqlen, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.c_k(x).reshape(bsz, seqlen, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.c_v(x).reshape(bsz, seqlen, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = rms_norm(q), rms_norm(k)
        start = cache.length if cache is not None else 0
        cos, sin = self.rotary(start, seqlen, x.device, q.dtype)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        q = q * self.q_gain.to(q.dtype)[None, :, None, None]
        if cache is not None:
            k, v = cache.extend(layer, k, v)
        # With a cache, a single new query may see every cached key, so no mask is needed; a
        # multi-token prefill starts from an empty cache and uses the causal mask as usual.
        is_causal = self.causal and seqlen > 1
        if self.num_kv_heads != self.num_heads and not _SDPA_HAS_GQA:
            repeat = self.num_heads // self.num_kv_heads
            k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal,
                                               enable_gqa=self.num_kv_heads != self.num_heads)
        return self.proj(y.transpose(1, 2).reshape(bsz, seqlen, dim))


class MLP(nn.Module):
    """relu² MLP: the square keeps ReLU's sparsity with a smoother, stronger response."""

    def __init__(self, dim: int, mult: int) -> None:
        super().__init__()
        self.fc = CastedLinear(dim, mult * dim)
        self.proj = CastedLinear(mult * dim, dim, zero_init=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.relu(self.fc(x)).square())


class Block(nn.Module):
    """Pre-norm block whose input is a learned mix of the residual stream and the embedding x0."""

    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, mlp_mult: int,
                 rope_base: float, qk_gain_init: float, *, causal: bool = True) -> None:
        super().__init__()
        self.attn = CausalSelfAttention(dim, num_heads, num_kv_heads, rope_base, qk_gain_init,
                                        causal=causal)
        self.mlp = MLP(dim, mlp_mult)
        self.attn_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.mlp_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))).float())

    def tensor_roles(self, prefix: str) -> dict[str, str]:
        """Roles of this block's tensors (names under `prefix`): the attention and MLP matrices by
        sub-layer; the query gain, output scales and residual mix are `control`."""
        roles = {f"{prefix}attn.{n}": "attn" for n, _ in self.attn.named_parameters()}
        roles.update({f"{prefix}mlp.{n}": "mlp" for n, _ in self.mlp.named_parameters()})
        roles.update({f"{prefix}{n}": "control" for n in ("attn.q_gain", "attn_scale", "mlp_scale", "resid_mix")})
        return roles

    def forward(self, x: torch.Tensor, x0: torch.Tensor, cache: KVCache | None = None,
                layer: int = 0) -> torch.Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        x = x + self.attn_scale.to(x.dtype) * self.attn(rms_norm(x), cache, layer)
        return x + self.mlp_scale.to(x.dtype) * self.mlp(rms_norm(x))


def unet_forward(blocks: nn.ModuleList, skip_weights: torch.Tensor, x: torch.Tensor,
                 cache: KVCache | None = None) -> torch.Tensor:
    """Run blocks as a U-Net: the first half's outputs are added back, weighted, into the second
    half in reverse order (the baseline's skips; num_skips = min(encoder, decoder) layers)."""
    num_encoder = len(blocks) // 2
    x0 = x
    skips: list[torch.Tensor] = []
    for i in range(num_encoder):
        x = blocks[i](x, x0, cache, i)
        skips.append(x)
    for i in range(len(blocks) - num_encoder):
        if skips:
            x = x + skip_weights[i].to(x.dtype) * skips.pop()
        x = blocks[num_encoder + i](x, x0, cache, num_encoder + i)
    return x


def num_unet_skips(num_layers: int) -> int:
    return min(num_layers // 2, num_layers - num_layers // 2)


@dataclasses.dataclass
class BackboneConfig:
    """The baseline transformer's shape. Field names are the official environment variables,
    lower-cased (VOCAB_SIZE → vocab_size); a family's config extends it with fields of its own."""

    vocab_size: int = 1024
    num_layers: int = 9
    model_dim: int = 512
    num_heads: int = 8
    num_kv_heads: int = 4
    mlp_mult: int = 2
    rope_base: float = 10000.0
    qk_gain_init: float = 1.5
