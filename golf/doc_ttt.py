"""Document-isolated score-first TTT: each document scored alone, with its own LoRA, reset per document.

The val stream is cut into documents at BOS tokens. Document d spans stream positions s..e,
s its BOS and e the next document's BOS (or the end): its targets are s+1..e, so the documents'
targets tile the stream's 1..M exactly (M as for plain windows of the eval length, the same
targets and bytes; predicting the next BOS from the end of a document is scored, as in a flat
stream). A document's targets are scored S at a time (S the eval stride), each chunk by one
window that ends at the chunk and reaches back at most L tokens (the eval length), never before
the document's BOS: no score sees another document. With no adapters and no phases this is
document-isolated sliding-window scoring.

After a chunk is scored, the document's rank-r adapters (golf.lora: the head and `lora_targets`,
queries and values by default) take one AdamW step on that chunk's loss, and the next chunk is
scored with them; the adapters are reset before every document. Documents are scored `doc_batch` at
a time, side by side, each with its own adapters; the batch loss is the sum of the documents' own
losses, so a document's updates (and score) do not depend on its batch. Within a batch, documents
of like length go together (less padding).

Global SGD phases: with `prefix_docs` P and `phases` n, the first P documents of the stream are
cut into n phases. Once every document of a phase is scored, the shared weights take `epochs`
SGD passes over that phase's documents (each alone, windows of L inside it) before the next
phase is scored; the documents after the prefix are scored with the weights of the last phase.

The score-first order is proven on every run by golf.scorefirst.ScoreFirstGuard: adapter slots
for the LoRA (what a slot read counts until its reset), the shared weights for the phases.
Under DDP each rank scores its share of each phase's batches; the phases' gradients are summed
over ranks; the sums are all-reduced at the end.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from golf.bpb import ByteTable, window_bytes
from golf.data import rank_slice, usable_tokens
from golf.errors import GolfError
from golf.lora import BatchedLoRA
from golf.models.base import LanguageModel
from golf.score import ScoreResult
from golf.scorefirst import ScoreFirstGuard, distributed
from golf.sliding import require_causal_exact
from golf.ttt import TTTConfig, TTTResult, shared_step


def find_documents(tokens: torch.Tensor, bos_id: int, end: int) -> torch.Tensor:
    """int64 [D, 2]: (s, e) of every document of positions 0..end; targets s+1..e tile 1..end.

    A stream that does not open with a BOS starts with a document whose first token is position 0."""
    bos = (tokens[1:end] == bos_id).nonzero().flatten() + 1
    bounds = torch.cat((torch.tensor([0]), bos, torch.tensor([end])))
    return torch.stack((bounds[:-1], bounds[1:]), dim=1)


def phase_bounds(n_docs: int, prefix_docs: int, phases: int) -> list[int]:
    """Document indices where each phase ends (global SGD follows), then the end of the stream."""
    prefix = min(prefix_docs, n_docs)
    cuts = sorted({prefix * k // phases for k in range(1, phases + 1)} - {0}) if prefix else []
    return cuts + ([n_docs] if not cuts or cuts[-1] < n_docs else [])


class DocumentWindows:
    """The chunk windows of a batch of documents: chunk c of a document scores its targets
    c·C+1..min((c+1)·C, n) (document coordinates, n targets) from at most L tokens before them."""

    def __init__(self, docs: torch.Tensor, chunk: int, length: int) -> None:
        self.docs, self.chunk, self.length = docs, chunk, length
        self.targets = docs[:, 1] - docs[:, 0]
        self.chunks = (self.targets + chunk - 1) // chunk

    def window(self, d: int, c: int) -> tuple[int, int, int]:
        """(a, b, first): chunk c of document d reads stream positions [a, b] and scores first..b."""
        s, n = int(self.docs[d, 0]), int(self.targets[d])
        last = min((c + 1) * self.chunk, n)
        return s + max(0, last - self.length), s + last, s + c * self.chunk + 1

    def batch(self, tokens: torch.Tensor, rows: list[int], c: int) -> ChunkBatch:
        """Chunk c of documents `rows`, right-padded. Padding sits after every real token: a causal
        model's real positions never see it."""
        spans = [self.window(d, c) for d in rows]
        width = max(b - a for a, b, _ in spans)
        windows = torch.zeros(len(rows), width + 1, dtype=tokens.dtype)
        index = torch.zeros(len(rows), self.chunk, dtype=torch.int64)
        valid = torch.zeros(len(rows), self.chunk, dtype=torch.bool)
        for i, (a, b, first) in enumerate(spans):
            windows[i, :b - a + 1] = tokens[a:b + 1]
            index[i] = first - a - 1 + torch.arange(self.chunk).clamp(max=b - first)
            valid[i, :b - first + 1] = True
        starts = torch.tensor([a for a, _, _ in spans])
        return ChunkBatch(windows, index, valid, starts, spans)


@dataclasses.dataclass(frozen=True, eq=False)
class ChunkBatch:
    windows: torch.Tensor  # [R, W + 1] tokens
    index: torch.Tensor  # [R, C]: where in its window each row's scored targets are (repeats past the last)
    valid: torch.Tensor  # [R, C]: which of those are real targets
    starts: torch.Tensor  # [R]: the stream position of each window's first token
    spans: list[tuple[int, int, int]]  # (a, b, first) per row


def balance(costs: list[int], world_size: int) -> list[list[int]]:
    """Indices of `costs` per rank, each item to the least-loaded rank, costliest first (the same on every rank)."""
    loads, shares = [0] * world_size, [[] for _ in range(world_size)]
    for i in sorted(range(len(costs)), key=lambda i: -costs[i]):
        r = loads.index(min(loads))
        loads[r] += costs[i]
        shares[r].append(i)
    return [sorted(share) for share in shares]


def score_documents(model: LanguageModel, tokens: torch.Tensor, table: ByteTable, length: int, stride: int,
                    config: TTTConfig, *, bos_id: int, device: torch.device, rank: int = 0, world_size: int = 1,
                    autocast_dtype: torch.dtype | None = None, progress: bool = False,
                    sidecar: torch.Tensor | None = None) -> TTTResult:
    """Score the 1-D val stream `tokens` document by document (the module docstring): eval length
    `length`, `stride` targets of a document per chunk."""
    if not 1 <= stride <= length:
        raise GolfError(f"document TTT: the stride (targets per chunk) must be between 1 and the eval length "
                        f"{length}, got {stride}")
    start = time.perf_counter()
    end = usable_tokens(tokens.numel(), length, "the validation token stream") - 1
    if sidecar is not None and sidecar.numel() < end + 1:
        raise GolfError(f"byte sidecar covers {sidecar.numel()} positions, the scored stream {end + 1}")
    if not bool((tokens[:end + 1] == bos_id).any()):
        raise GolfError(f"document TTT: the val stream holds no BOS (id {bos_id}), so it has no documents to "
                        "isolate; is the model's bos_id the tokenizer's?")
    require_causal_exact(model, tokens[:length + 1][None].to(device), what="document TTT",
                         autocast_dtype=autocast_dtype)
    model = copy.deepcopy(model).eval()  # the caller's weights stay as they were
    for p in model.parameters():
        p.requires_grad_(False)  # the adapters train; the shared weights only in a phase
    docs = find_documents(tokens, bos_id, end)
    plan = DocumentWindows(docs, stride, length)
    lora = (BatchedLoRA(model, config.lora_rank, config.doc_batch, targets=config.lora_target_names)
            if config.lora_rank else None)
    scorer = DocumentScorer(model, lora, tokens, table.to(device), plan, config, device=device,
                            autocast_dtype=autocast_dtype, sidecar=sidecar)
    sgd = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    bounds = phase_bounds(len(docs), config.prefix_docs, config.phases)
    n_phases = len(bounds) - 1  # parts followed by global SGD (the last part is never trained on)
    parts = []
    for lo, hi in zip([0, *bounds], bounds):
        order = lo + torch.argsort(plan.targets[lo:hi], descending=True, stable=True)  # like lengths together
        groups = [order[i:i + config.doc_batch].tolist() for i in range(0, hi - lo, config.doc_batch)]
        costs = [len(g) * int(plan.chunks[g].max()) for g in groups]  # padded chunk-rows: the batch's work
        parts.append((lo, hi, [groups[i] for i in balance(costs, world_size)[rank]]))
    sums = torch.zeros(len(bounds), 3, dtype=torch.float64, device=device)  # nats, tokens, bytes per part
    phase_updates, phase_s = 0, 0.0
    bar = tqdm(total=sum(len(mine) for *_, mine in parts), desc="doc ttt", unit="batch",
               disable=not progress or rank != 0 or None, leave=False)
    for part, (lo, hi, mine) in enumerate(parts):
        for group in mine:
            sums[part] += scorer.run(group)
            bar.update()
        expected = torch.zeros(tokens.numel(), dtype=torch.bool)
        for s, e in docs[lo:hi].tolist():
            expected[s + 1:e + 1] = True
        scorer.guard.commit_scored(0, tokens.numel(), expected)
        if part < n_phases and config.epochs:
            t0 = time.perf_counter()
            lr = config.lr * 0.5 * (1 + math.cos(math.pi * part / max(n_phases, 1)))
            phase_updates += train_phase(model, sgd, tokens, docs[lo:hi], length, config, lr, scorer.guard,
                                         device=device, rank=rank, world_size=world_size,
                                         autocast_dtype=autocast_dtype)
            scorer.guard.commit_trained()
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # the phase's kernels finish inside its timer
            phase_s += time.perf_counter() - t0
    bar.close()
    counts = torch.tensor([scorer.updates, scorer.guard.adapter_reads, scorer.guard.checks], device=device)
    if distributed():
        dist.all_reduce(sums)
        dist.all_reduce(counts)  # every rank's adapter steps, reads and checks
    total = sums.sum(0)
    seconds = time.perf_counter() - start
    score = ScoreResult(nats_sum=float(total[0]), tokens=int(total[1]), bytes=int(total[2]), label="exact",
                        seconds=seconds)
    lora_updates, adapter_reads, checks = (int(v) for v in counts.tolist())
    guard = {**scorer.guard.summary(), "adapter_positions_read": adapter_reads, "checks": checks}
    phase_bpb = [float(n / math.log(2) / b) if b else math.nan for n, _, b in sums.tolist()]
    # The adapters train inside the scoring pass (one forward serves both): their time counts as scoring.
    return TTTResult(score, int(plan.chunks.sum()), lora_updates + phase_updates, seconds - phase_s, phase_s,
                     guard, documents=len(docs), phase_bpb=phase_bpb, longest_document=int(plan.targets.max()))


class DocumentScorer:
    """Scores batches of documents chunk by chunk, each document's adapters trained on each chunk
    after it is scored (one forward pass does both: the scores are of the weights before the step)."""

    def __init__(self, model: LanguageModel, lora: BatchedLoRA | None, tokens: torch.Tensor, table: ByteTable,
                 plan: DocumentWindows, config: TTTConfig, *, device: torch.device,
                 autocast_dtype: torch.dtype | None, sidecar: torch.Tensor | None) -> None:
        self.model, self.lora, self.tokens, self.table, self.plan = model, lora, tokens, table, plan
        self.config, self.device, self.autocast_dtype, self.sidecar = config, device, autocast_dtype, sidecar
        self.guard = ScoreFirstGuard(tokens.numel(), device)
        self.updates = 0  # adapter steps (this rank)

    def nats(self, windows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Nats [R, C] of the targets `index` picks in each window [R, W + 1], by the (adapted) model.
        With adapters the head runs at those positions only (at most C of the window's W)."""
        targets = windows[:, 1:].gather(1, index)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            if self.lora is None:
                return self.model.score(windows).nats.float().gather(1, index)
            logits = self.lora.logits(self.model, windows[:, :-1], index)
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none").view_as(index)

    def run(self, group: list[int]) -> torch.Tensor:
        """Score documents `group` (at most doc_batch); returns (nats, tokens, bytes) summed."""
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        optimizer = None
        if self.lora is not None:
            self.lora.reset()
            for slot in range(len(group)):
                self.guard.reset_slot(slot)
            optimizer = torch.optim.AdamW(self.lora.parameters(), lr=self.config.lora_lr,
                                          betas=(self.config.lora_beta1, self.config.lora_beta2),
                                          weight_decay=self.config.lora_wd)
        slot_of = {d: i for i, d in enumerate(group)}
        for c in range(int(self.plan.chunks[group].max())):
            rows = [d for d in group if int(self.plan.chunks[d]) > c]
            slots = [slot_of[d] for d in rows]  # the adapter each row uses, and the guard checks
            batch = self.plan.batch(self.tokens, rows, c)
            for slot, (a, b, first) in zip(slots, batch.spans):
                self.guard.scoring(torch.arange(first, b + 1), slot=slot)
            learn = torch.tensor([c + 1 < int(self.plan.chunks[d]) for d in rows])
            if self.lora is not None:
                self.lora.rows = torch.tensor(slots).to(self.device, non_blocking=True)
            windows = batch.windows.to(self.device, non_blocking=True)
            index = batch.index.to(self.device, non_blocking=True)
            valid = batch.valid.to(self.device, non_blocking=True)
            with torch.set_grad_enabled(optimizer is not None and bool(learn.any())):
                nats = self.nats(windows, index)
            sums += self.tally(batch, windows, index, valid, nats.detach())
            if optimizer is None or not bool(learn.any()):
                continue
            for slot, (a, b, _), more in zip(slots, batch.spans, learn.tolist()):
                if more:
                    self.guard.reading(a, b + 1, slot=slot)
            # Each document's own mean loss over its chunk, summed: no document's gradient involves another's.
            keep = learn.to(self.device, torch.float32, non_blocking=True)
            per_row = (nats * valid).sum(1) / valid.sum(1)
            optimizer.zero_grad(set_to_none=False)
            (per_row * keep).sum().backward()
            optimizer.step()
            self.updates += 1
        return sums

    def tally(self, batch: ChunkBatch, windows: torch.Tensor, index: torch.Tensor, valid: torch.Tensor,
              nats: torch.Tensor) -> torch.Tensor:
        """(nats, tokens, bytes) of the valid targets; bytes from the sidecar when there is one."""
        if self.sidecar is None:
            nbytes = window_bytes(self.table, windows).gather(1, index)
        else:
            nbytes = self.sidecar[batch.starts[:, None] + 1 + batch.index].to(self.device, torch.int64)
        return torch.stack(((nats.double() * valid).sum(), valid.sum().double(), (nbytes.double() * valid).sum()))


def train_phase(model: LanguageModel, optimizer: torch.optim.Optimizer, tokens: torch.Tensor, docs: torch.Tensor,
                length: int, config: TTTConfig, lr: float, guard: ScoreFirstGuard, *, device: torch.device, rank: int,
                world_size: int, autocast_dtype: torch.dtype | None) -> int:
    """`config.epochs` SGD passes of the shared weights over `docs` (scored), each cut into windows of at
    most `length` targets that stay inside it; returns the number of updates."""
    pieces = [(a, min(a + length, e)) for s, e in docs.tolist() for a in range(s, e, length)]
    pieces.sort(key=lambda p: p[0] - p[1])  # longest first: batches of like lengths
    for group in optimizer.param_groups:
        group["lr"] = lr
    params = list(model.parameters())
    for p in params:
        p.requires_grad_(True)
    updates = 0
    model.train()
    for _ in range(config.epochs):
        for lo in range(0, len(pieces), config.batch_seqs):
            batch = pieces[lo:lo + config.batch_seqs]
            share = rank_slice(len(batch), rank, world_size)
            mine = batch[share.start:share.stop]
            optimizer.zero_grad(set_to_none=False)
            if mine:
                width = max(b - a for a, b in mine)
                windows = torch.zeros(len(mine), width + 1, dtype=tokens.dtype)
                mask = torch.zeros(len(mine), width, dtype=torch.bool)
                for i, (a, b) in enumerate(mine):
                    guard.reading(a, b + 1)
                    windows[i, :b - a + 1] = tokens[a:b + 1]
                    mask[i, :b - a] = True
                windows, mask = windows.to(device), mask.to(device)
                with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    nats = model.score(windows).nats.float()
                # Per target of a full batch (batch_seqs windows of L): a batch of short document tails
                # takes a step as small as its tokens, not one as large as a full batch's.
                ((nats * mask).sum() / (config.batch_seqs * length)).backward()
            shared_step(optimizer, params, config, world_size)
            updates += 1
    model.eval()
    for p in params:
        p.requires_grad_(False)
    return updates
