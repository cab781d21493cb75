"""Transformer pieces shared by the model families (the official baseline's modules).

Norms are parameter-free RMSNorm, attention is GQA with QK-norm, RoPE and a learned per-head
query gain, the MLP is relu². Linear weights stay fp32 and are cast to the activation dtype at
each matmul, so bf16 autocast on GPU computes in bf16 while the optimizer updates fp32 weights.

`BlockOptions` carries the changes the leaderboard's top records made to the block (all off by
default, which is the baseline): LeakyReLU(slope)² MLP, XSA, partial RoPE, layer-norm scaling,
parallel residuals and an attention-output gate. `SmearGate` and the recurrence schedule of
`unet_forward` are the records' other two model changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

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


@dataclasses.dataclass(frozen=True)
class BlockOptions:
    """Per-block variations on the baseline (the defaults are the baseline).

    leaky_slope: MLP activation LeakyReLU(slope)² (0 = relu²). xsa: remove from each head's output
    its component along the token's own value vector. rope_dims: rotary on the first r dims of each
    head, the rest position-free (0 = all). norm_scale: multiplies both pre-norms (layer-norm
    scaling passes 1/sqrt(layer+1) so deep layers' contributions do not grow with depth).
    parallel: attention and MLP both read the same input and add to the residual together.
    attn_gate: a learned per-head gate 2σ(x·W) on the attention output (1 at init).
    """

    leaky_slope: float = 0.0
    xsa: bool = False
    rope_dims: int = 0
    norm_scale: float = 1.0
    parallel: bool = False
    attn_gate: bool = False


BASELINE = BlockOptions()


class Rotary(nn.Module):
    """Rotary position embedding tables (half-split over `head_dim` dims), computed per call.

    No cache on purpose: a Python-side cache is state torch.compile guards on, so the first call
    (empty cache) and the second (filled) would compile two graphs; the tables cost one small outer
    product per layer, which the compiled graph fuses."""

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        # Not a buffer: a buffer would be cast to bf16 with the model, and bf16 positions round
        # off beyond 256. The tables are always built in fp32.
        self.inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))

    def forward(self, start: int, length: int, device: torch.device,
                dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.arange(start, start + length, dtype=torch.float32, device=device)
        freqs = torch.outer(positions, self.inv_freq.to(device))
        return freqs.cos()[None, None].to(dtype), freqs.sin()[None, None].to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class KVCache:
    """Keys and values seen so far, one entry per attention layer, for incremental decoding."""

    def __init__(self) -> None:
        self.layers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.length = 0
        self.previous_embedding: torch.Tensor | None = None  # SmearGate's h_{t-1} across steps

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if layer in self.layers:
            old_k, old_v = self.layers[layer]
            k, v = torch.cat((old_k, k), dim=2), torch.cat((old_v, v), dim=2)
        self.layers[layer] = (k, v)
        return k, v


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, rope_base: float,
                 qk_gain_init: float, *, causal: bool = True, options: BlockOptions = BASELINE) -> None:
        super().__init__()
        if dim % num_heads or num_heads % num_kv_heads:
            raise ValueError(f"model_dim {dim} / num_heads {num_heads} / num_kv_heads {num_kv_heads} do not divide")
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = dim // num_heads
        if self.head_dim % 2:
            raise ValueError(f"head dim {self.head_dim} must be even for RoPE")
        self.rope_dims = options.rope_dims or self.head_dim
        if self.rope_dims % 2 or not 0 < self.rope_dims <= self.head_dim:
            raise ValueError(f"rope_dims {options.rope_dims} must be even and at most the head dim {self.head_dim}")
        kv_dim = num_kv_heads * self.head_dim
        self.causal = causal
        self.xsa = options.xsa
        self.c_q = CastedLinear(dim, dim)
        self.c_k = CastedLinear(dim, kv_dim)
        self.c_v = CastedLinear(dim, kv_dim)
        self.proj = CastedLinear(dim, dim, zero_init=True)
        # Zero init: 2σ(0) = 1, so the gated block starts as the ungated one.
        self.gate = CastedLinear(dim, num_heads, zero_init=True) if options.attn_gate else None
        self.q_gain = nn.Parameter(torch.full((num_heads,), qk_gain_init, dtype=torch.float32))
        self.rotary = Rotary(self.rope_dims, rope_base)

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        if self.rope_dims == self.head_dim:
            return apply_rotary(x, cos, sin)
        r = self.rope_dims  # partial RoPE: the other dims carry content only, untouched
        return torch.cat((apply_rotary(x[..., :r], cos, sin), x[..., r:]), dim=-1)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        bsz, seqlen, dim = x.shape
        q = self.c_q(x).reshape(bsz, seqlen, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.c_k(x).reshape(bsz, seqlen, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.c_v(x).reshape(bsz, seqlen, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = rms_norm(q), rms_norm(k)
        start = cache.length if cache is not None else 0
        cos, sin = self.rotary(start, seqlen, x.device, q.dtype)
        q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
        q = q * self.q_gain.to(q.dtype)[None, :, None, None]
        own_v = v
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
        if self.xsa:
            y = remove_self_value(y, own_v.repeat_interleave(self.num_heads // self.num_kv_heads, dim=1))
        if self.gate is not None:
            y = y * (2 * torch.sigmoid(self.gate(x))).transpose(1, 2)[..., None]
        return self.proj(y.transpose(1, 2).reshape(bsz, seqlen, dim))


def remove_self_value(y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """XSA: each head's output minus its projection on the token's own value vector, so attention
    carries only what other tokens add (the token itself reaches the residual stream directly)."""
    vf = v.float()
    coef = (y.float() * vf).sum(-1, keepdim=True) / vf.square().sum(-1, keepdim=True).clamp_min(1e-12)
    return (y.float() - coef * vf).to(y.dtype)


class MLP(nn.Module):
    """LeakyReLU(slope)² MLP (slope 0: the baseline's relu²): the square keeps the activation's
    sparsity with a smoother, stronger response; a small negative slope keeps gradients alive."""

    def __init__(self, dim: int, mult: int, leaky_slope: float = 0.0) -> None:
        super().__init__()
        self.fc = CastedLinear(dim, mult * dim)
        self.proj = CastedLinear(mult * dim, dim, zero_init=True)
        self.leaky_slope = leaky_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        h = torch.relu(h) if self.leaky_slope == 0 else F.leaky_relu(h, self.leaky_slope)
        return self.proj(h.square())


class Block(nn.Module):
    """Pre-norm block whose input is a learned mix of the residual stream and the embedding x0."""

    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, mlp_mult: int,
                 rope_base: float, qk_gain_init: float, *, causal: bool = True,
                 options: BlockOptions = BASELINE) -> None:
        super().__init__()
        self.attn = CausalSelfAttention(dim, num_heads, num_kv_heads, rope_base, qk_gain_init,
                                        causal=causal, options=options)
        self.mlp = MLP(dim, mlp_mult, options.leaky_slope)
        self.attn_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.mlp_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))).float())
        self.norm_scale = options.norm_scale
        self.parallel = options.parallel

    def tensor_roles(self, prefix: str) -> dict[str, str]:
        """Roles of this block's tensors (names under `prefix`): the attention and MLP matrices by
        sub-layer; the query gain, output scales and residual mix are `control`."""
        roles = {f"{prefix}attn.{n}": "attn" for n, _ in self.attn.named_parameters()}
        roles.update({f"{prefix}mlp.{n}": "mlp" for n, _ in self.mlp.named_parameters()})
        roles.update({f"{prefix}{n}": "control" for n in ("attn.q_gain", "attn_scale", "mlp_scale", "resid_mix")})
        return roles

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x) if self.norm_scale == 1.0 else rms_norm(x) * self.norm_scale

    def forward(self, x: torch.Tensor, x0: torch.Tensor, cache: KVCache | None = None,
                layer: int = 0) -> torch.Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        attn_out = self.attn_scale.to(x.dtype) * self.attn(self._norm(x), cache, layer)
        if self.parallel:  # both sub-layers read the same stream: x + attn(n(x)) + mlp(n(x))
            return x + attn_out + self.mlp_scale.to(x.dtype) * self.mlp(self._norm(x))
        x = x + attn_out
        return x + self.mlp_scale.to(x.dtype) * self.mlp(self._norm(x))


class SmearGate(nn.Module):
    """Mixes each token's embedding with its predecessor's through a learned per-channel gate,
    h_t + σ(g)·h_{t−1}, except at a document's first token (BOS), so nothing crosses a document
    boundary (the leak of #1797), and at the first position of a window."""

    def __init__(self, dim: int, bos_id: int) -> None:
        super().__init__()
        self.gate = nn.Parameter(torch.full((dim,), -3.0, dtype=torch.float32))  # σ(−3) ≈ 0.05
        self.bos_id = bos_id

    def forward(self, h: torch.Tensor, ids: torch.Tensor, prev: torch.Tensor | None = None) -> torch.Tensor:
        """`prev` [B, 1, D]: the embedding before h[:, 0] (incremental decoding); none in a window."""
        if prev is None:
            prev = torch.zeros_like(h[:, :1])
        before = torch.cat((prev, h[:, :-1]), dim=1)
        keep = (ids != self.bos_id)[..., None].to(h.dtype)
        return h + torch.sigmoid(self.gate).to(h.dtype) * keep * before


def recurrence_order(num_layers: int, start: int, end: int, loops: int) -> list[int]:
    """The order blocks run in when layers [start, end) loop `loops` times (1 = each once)."""
    if loops <= 1 or start >= end:
        return list(range(num_layers))
    return [*range(start), *(list(range(start, end)) * loops), *range(end, num_layers)]


def unet_forward(blocks: nn.ModuleList, skip_weights: torch.Tensor, x: torch.Tensor,
                 cache: KVCache | None = None, order: Sequence[int] | None = None) -> torch.Tensor:
    """Run blocks as a U-Net: the first half's outputs are added back, weighted, into the second
    half in reverse order (the baseline's skips; num_skips = min(encoder, decoder) layers).

    `order` (depth recurrence) may run some blocks again; skips stay tied to the physical layers:
    an encoder block pushes its output after its first run, a decoder block pops before its first.
    The KV cache is keyed by the position in `order`, so a looped block keeps one cache per run.
    """
    order = list(range(len(blocks))) if order is None else order
    num_encoder = len(blocks) // 2
    x0 = x
    skips: list[torch.Tensor] = []
    seen: set[int] = set()
    for position, i in enumerate(order):
        first = i not in seen
        seen.add(i)
        if first and i >= num_encoder and skips:
            x = x + skip_weights[i - num_encoder].to(x.dtype) * skips.pop()
        x = blocks[i](x, x0, cache, position)
        if first and i < num_encoder:
            skips.append(x)
    return x


def unet_roles(blocks: nn.ModuleList) -> dict[str, str]:
    """Roles of a U-Net block stack's tensors (`unet_forward`'s): every block's own, and the skip
    weights, which are `control` like the blocks' gains."""
    roles = {"skip_weights": "control"}
    for i, block in enumerate(blocks):
        roles.update(block.tensor_roles(f"blocks.{i}."))
    return roles


def num_unet_skips(num_layers: int) -> int:
    return min(num_layers // 2, num_layers - num_layers // 2)
