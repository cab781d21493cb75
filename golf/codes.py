"""Token ↔ n-bit codes for the bit-embedding models (MODEL=bits).

A code table is a [V] int64 tensor: token id → code, every code distinct and < 2**n with
n = ceil(log2 V). Bit i of a token (i = 0 first) is bit n-1-i of its code: the root of the code
tree first, so a bitwise-autoregressive head decides coarse-to-fine.

- `binary_codes`: the id itself. Like a random tree: the bits mean nothing.
- `hierarchical_codes`: balanced recursive 2-means bisection of one vector per token (the path of
  left/right splits is the code), so tokens that share a prefix have similar vectors. The vectors
  come from an SVD of co-occurrence counts on *training* tokens (`cooccurrence_vectors`) or from a
  trained artifact's token embedding (`embedding_vectors`); never from val.

Everything is deterministic (float64, fixed seeds, ties broken by token id), so every DDP rank
builds the same table; the table is stored in the artifact all the same (a model's `codes` buffer).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from golf.errors import GolfError

KMEANS_ITERATIONS = 10


def code_bits(vocab_size: int) -> int:
    """Bits per token: ceil(log2 V), at least 1."""
    if vocab_size < 1:
        raise GolfError(f"vocab_size must be >= 1, got {vocab_size}")
    return max(1, math.ceil(math.log2(vocab_size)))


def binary_codes(vocab_size: int) -> torch.Tensor:
    return torch.arange(vocab_size, dtype=torch.int64)


def to_bits(codes: torch.Tensor, n_bits: int) -> torch.Tensor:
    """Codes [...] → ±1 float bits [..., n_bits], root bit (the code's most significant) first."""
    shifts = torch.arange(n_bits - 1, -1, -1, device=codes.device)
    return ((codes[..., None] >> shifts) & 1).float() * 2 - 1


def check_codes(codes: torch.Tensor, vocab_size: int, n_bits: int) -> None:
    """A usable table: one code per token, all distinct, all below 2**n_bits."""
    if codes.shape != (vocab_size,) or codes.dtype != torch.int64:
        raise GolfError(f"code table must be int64 [{vocab_size}], got {codes.dtype} {list(codes.shape)}")
    if int(codes.min()) < 0 or int(codes.max()) >= 1 << n_bits:
        raise GolfError(f"codes must lie in [0, 2**{n_bits})")
    if torch.unique(codes).numel() != vocab_size:
        raise GolfError("code table maps two tokens to the same code")


def _stable_order(*keys: torch.Tensor) -> torch.Tensor:
    """Indices sorting by keys[0], then keys[1], ... (ties left in index order): a lexsort."""
    order = torch.arange(keys[0].numel())
    for key in reversed(keys):
        order = order[torch.sort(key[order], stable=True).indices]
    return order


def _rank_within(groups: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """For items visited in `order` (sorted by group), each item's 0-based rank inside its group."""
    sorted_groups = groups[order]
    first = torch.ones_like(sorted_groups, dtype=torch.bool)
    first[1:] = sorted_groups[1:] != sorted_groups[:-1]
    position = torch.arange(order.numel())
    start = torch.cummax(torch.where(first, position, torch.zeros_like(position)), dim=0).values
    rank = torch.empty_like(order)
    rank[order] = position - start
    return rank


def _segment_mean(values: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    sums = torch.zeros(n_groups, values.size(1), dtype=values.dtype).index_add_(0, groups, values)
    counts = torch.bincount(groups, minlength=n_groups).clamp_min(1).to(values.dtype)
    return sums / counts[:, None]


def hierarchical_codes(vectors: torch.Tensor, n_bits: int | None = None) -> torch.Tensor:
    """Balanced recursive 2-means bisection: the code of each of the V rows of `vectors` [V, d].

    Level by level, every node's tokens are split by 2-means (centroids seeded at the node mean ±
    half the offset of its farthest token, then Lloyd steps), ranked by how much nearer they are to
    the first centroid than to the second, and cut at ceil(size/2): each side then holds at most
    2**(bits left), so exactly `n_bits` bits suffice. All nodes of a level are split at once.
    """
    vectors = vectors.detach().to("cpu", torch.float64)
    vocab = vectors.size(0)
    n_bits = code_bits(vocab) if n_bits is None else n_bits
    if vocab > 1 << n_bits:
        raise GolfError(f"{vocab} tokens do not fit in {n_bits}-bit codes")
    ids = torch.arange(vocab)
    node = torch.zeros(vocab, dtype=torch.int64)  # the code prefix decided so far
    for level in range(n_bits):
        n_nodes = 1 << level
        mean = _segment_mean(vectors, node, n_nodes)
        offset = vectors - mean[node]
        far = _stable_order(node, -offset.square().sum(1), ids)  # per node: farthest token first
        is_first = _rank_within(node, far) == 0
        seed = torch.zeros_like(mean).index_copy_(0, node[is_first], offset[is_first])
        centroids = torch.stack((mean + seed / 2, mean - seed / 2), dim=1)  # [nodes, 2, d]
        for _ in range(KMEANS_ITERATIONS):
            dist = (vectors[:, None, :] - centroids[node]).square().sum(-1)  # [V, 2]
            side = (dist[:, 1] < dist[:, 0]).long()
            for s in (0, 1):
                members = side == s
                moved = _segment_mean(vectors[members], node[members], n_nodes)
                present = torch.bincount(node[members], minlength=n_nodes) > 0
                centroids[present, s] = moved[present]
        dist = (vectors[:, None, :] - centroids[node]).square().sum(-1)
        preference = dist[:, 0] - dist[:, 1]  # lower: nearer the first centroid
        order = _stable_order(node, preference, ids)
        size = torch.bincount(node, minlength=n_nodes)
        bit = (_rank_within(node, order) >= (size[node] + 1) // 2).long()
        node = node * 2 + bit
    return node


def _randomized_svd(matrix: torch.Tensor, rank: int, seed: int, power_iterations: int = 4) -> torch.Tensor:
    """U·sqrt(S) of the top `rank` singular triplets of a (sparse) square matrix, from a seeded
    Gaussian sketch (Halko et al.), so the result is deterministic."""
    generator = torch.Generator().manual_seed(seed)
    sketch = torch.randn(matrix.size(1), rank + 8, dtype=torch.float64, generator=generator)
    basis = torch.linalg.qr(matrix @ sketch).Q
    for _ in range(power_iterations):
        basis = torch.linalg.qr(matrix @ torch.linalg.qr(matrix.t() @ basis).Q).Q
    u, s, _ = torch.linalg.svd((matrix.t() @ basis).t(), full_matrices=False)
    return (basis @ u[:, :rank]) * s[:rank].sqrt()


def cooccurrence_vectors(tokens: torch.Tensor, vocab_size: int, *, dim: int = 32, window: int = 2,
                         seed: int = 0) -> torch.Tensor:
    """One vector per token [V, dim]: rows of a rank-`dim` SVD of the positive PMI of symmetric
    co-occurrence counts within ±`window` positions of `tokens` (train tokens only, never val).
    Tokens never seen get the zero vector."""
    tokens = tokens.detach().to("cpu", torch.int64).flatten()
    if tokens.numel() <= window:
        raise GolfError(f"need more than {window} tokens for co-occurrence codes, got {tokens.numel()}")
    if int(tokens.max()) >= vocab_size or int(tokens.min()) < 0:
        raise GolfError(f"token ids must lie in [0, {vocab_size})")
    pairs = [tokens[:-d] * vocab_size + tokens[d:] for d in range(1, window + 1)]
    pairs += [tokens[d:] * vocab_size + tokens[:-d] for d in range(1, window + 1)]
    keys, counts = torch.unique(torch.cat(pairs), return_counts=True)
    rows, cols, counts = keys // vocab_size, keys % vocab_size, counts.double()
    row_sum = torch.zeros(vocab_size, dtype=torch.float64).index_add_(0, rows, counts)
    pmi = (counts * counts.sum() / (row_sum[rows] * row_sum[cols])).log().clamp_min(0)
    ppmi = torch.sparse_coo_tensor(torch.stack((rows, cols)), pmi, (vocab_size, vocab_size),
                                   check_invariants=True).coalesce()
    return _randomized_svd(ppmi, min(dim, vocab_size), seed)


def embedding_vectors(artifact: str | Path) -> torch.Tensor:
    """The token embedding ([V, d], the tensor of role `emb`) of a trained golf artifact."""
    import quant  # lazily: golf.models (which builds codes) must not import quant
    from golf.models import roles_from_meta

    loaded = quant.read_artifact(Path(artifact))
    emb = [name for name, role in roles_from_meta(loaded.meta).items() if role == "emb"]
    if len(emb) != 1:
        raise GolfError(f"{artifact}: expected one tensor of role 'emb', found {len(emb)}")
    return loaded.state_dict[emb[0]].double()


def tree_nodes(codes: torch.Tensor, n_bits: int) -> torch.Tensor:
    """The code-tree node each bit of each code is decided at [..., n_bits]: bit i is decided at
    the node of its i-bit prefix, numbered heap-style ((1 << i) - 1 + prefix; root 0)."""
    levels = torch.arange(n_bits, device=codes.device)
    return (1 << levels) - 1 + (codes[..., None] >> (n_bits - levels))


def tree_branches(codes: torch.Tensor, n_bits: int) -> torch.Tensor:
    """[2**n_bits - 1, 2] bool: whether the 0-branch / 1-branch of each tree node leads to a code in
    the table. With V < 2**n some branches lead nowhere: a head must give them probability 0."""
    nodes = tree_nodes(codes, n_bits).flatten()
    bits = ((to_bits(codes, n_bits) + 1) / 2).long().flatten()
    table = torch.zeros((1 << n_bits) - 1, 2, dtype=torch.bool, device=codes.device)
    return table.index_put_((nodes, bits), torch.ones_like(nodes, dtype=torch.bool))
