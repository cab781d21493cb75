"""Fuzz `golf score` with hostile artifacts whose checksums are valid, under a memory cap.

Every case is a mutation of a small, valid artifact, re-signed (lengths fixed, SHA-256 recomputed)
so it gets past the checksum and reaches the parser, the decoder and the model builder. Four kinds:

    raw       bytes flipped, set, inserted, deleted or duplicated anywhere after the magic (lengths
              as they fall), or only in the compressed body (its length fixed)
    body      the same on the decompressed body (manifest and payload), recompressed and re-framed,
              sometimes with a lying decompressed length
    manifest  structure-aware: one to three fields of the parsed manifest replaced by a hostile
              value (wrong type, negative, huge, deep, empty, NaN literal) or a near miss of the
              original, deleted, copied (overlapping parts, extra tensors) or added
    payload   float parts overwritten with NaN, inf or huge values

Each case runs through the public scoring path (`golf score ARTIFACT --json`) in a forked child
with an address-space limit and an alarm; the parent collects its exit status, output, wall time
and peak RSS (wait4). A case passes if it is refused with one `golf: error:` line and exit 2, or
accepted with exit 0, valid JSON and a finite val_bpb. Anything else (another exception type, a
signal, a traceback, NaN accepted, more than 1 GB or 10 s) is a failure. Then the bombs, each
in a forked child and as a fresh `python -m golf score` process (peak RSS of both): zstd bodies
that really decompress to 1 GiB and 64 GiB with their true size in the header (the acceptance
bombs: refused under 512 MB), and a 1 GiB zlib stream behind a header declaring the largest body
golf accepts (stopped by the bounded decompression itself).

    python bench/fuzz_artifacts.py --cases 10000 --seed 0 --out bench/results/fuzz-artifacts.json
    python bench/fuzz_artifacts.py --only 1234 --seed 0      # replay one case, print its output
"""

from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import io
import json
import os
import platform
import random
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's golf, run from anywhere

import torch  # noqa: E402

import quant  # noqa: E402
from golf import embedded, limits, models  # noqa: E402
from golf.data import read_shard, write_shard  # noqa: E402
from quant.compress import compress, decompress  # noqa: E402

MAX_CASE_SECONDS = 10.0
MAX_CASE_RSS_BYTES = 1 << 30  # the acceptance bound: no case above 1 GB
ADDRESS_LIMIT_BYTES = 3 << 30  # enforced on each child; torch alone maps ~0.65 GB of address space
VAL_TOKENS = 2049  # a tiny val slice: a case is fast, and seq_len can never exceed 2048
TINY = dict(vocab_size=1024, num_layers=1, model_dim=32, num_heads=4, num_kv_heads=2)
SEEDS = [("int8", "zstd-22"), ("emb=int4g32,attn=int6,mlp=int5,other=int8", "zlib-9"), ("fp8", "lzma"),
         ("fp16", "none"), ("int4", "brotli-11"), ("fp32", "zstd-22")]
KINDS = ("raw", "body", "manifest", "payload")
_HEAD = struct.Struct("<4sHB")
_SIZES = struct.Struct("<QQ")


# ----------------------------------------------------------------------------- seeds and framing


def seed_artifacts() -> list[bytes]:
    torch.set_num_threads(1)  # before any fork: children inherit a quiet, single-threaded torch
    # The scorer's meta-device build imports torch._dynamo on first use (~1 s); do it once here so
    # each forked case measures golf's work, not that import.
    limits.meta_model("ar", TINY)
    torch.manual_seed(0)
    model = models.build("ar", TINY)
    meta = {"model": {"variant": "ar", "config": model.config_dict()},
            "tokenizer": {"name": "fineweb_1024_bpe.model", "sha256": embedded.EMBEDDED_TOKENIZER_SHA256,
                          "vocab_size": 1024}, "eval": {"seq_len": 64}, "run": {"run_id": "fuzz", "seed": 0}}
    names = quant.compressor_names()
    return [quant.encode_artifact(model.state_dict(), rule=rule, roles=model.checked_roles(), meta=meta,
                                  compressor=c if c in names else "zstd-22") for rule, c in SEEDS]


@dataclass
class Frame:
    compressor: str
    body: bytes


def unframe(data: bytes) -> Frame:
    name_len = _HEAD.unpack_from(data)[2]
    name = data[_HEAD.size:_HEAD.size + name_len].decode("ascii")
    at = _HEAD.size + name_len
    raw_len, packed_len = _SIZES.unpack_from(data, at)
    return Frame(name, decompress(name, data[at + _SIZES.size:at + _SIZES.size + packed_len], raw_len))


def sign(data: bytes) -> bytes:
    return data + hashlib.sha256(data).digest()


def frame(compressor: str, packed: bytes, raw_len: int) -> bytes:
    name = compressor.encode("ascii")
    return sign(_HEAD.pack(b"GOLF", 1, len(name)) + name + _SIZES.pack(raw_len, len(packed)) + packed)


def split_body(body: bytes) -> tuple[dict, bytes]:
    n = struct.unpack_from("<I", body)[0]
    return json.loads(body[4:4 + n]), body[4 + n:]


def join_body(manifest_json: bytes, payload: bytes) -> bytes:
    return struct.pack("<I", len(manifest_json)) + manifest_json + payload


# ----------------------------------------------------------------------------- mutations

INTS = [-(2**63), -(2**31), -1, 0, 1, 2, 3, 7, 63, 64, 65, 255, 1024, 4096, 30000, 2**31 - 1, 2**32, 2**63, 10**30]
FLOATS = [0.0, -0.0, -1.0, 0.5, 1e-45, 1e-308, 1e308, 3.0e38, 65504.0, 1e30]
STRINGS = ["", "x", "²", "float32", "int8", "bfloat16", "int4g32", "raw", "fp32", "zstd-22", "ar", "planes",
           "row", "tensor", "0" * 64, "a" * 5000, "\u0000", "../../etc/passwd", "1e999"]


def hostile_value(rng: random.Random, depth: int = 0) -> object:
    pick = rng.randrange(9 if depth < 3 else 6)
    if pick == 0:
        return rng.choice(INTS)
    if pick == 1:
        return rng.choice(FLOATS)
    if pick == 2:
        return rng.choice(STRINGS)
    if pick == 3:
        return rng.choice([None, True, False])
    if pick == 4:
        return []
    if pick == 5:
        return {}
    if pick == 6:
        return [hostile_value(rng, depth + 1) for _ in range(rng.randrange(1, 4))]
    if pick == 7:
        return {rng.choice(STRINGS[:8]): hostile_value(rng, depth + 1) for _ in range(rng.randrange(1, 3))}
    return f"__DEEP{rng.choice([20, 40, 200, 100_000])}__"  # spliced in as text: json.dumps would recurse


def tweak(rng: random.Random, value: object) -> object:
    """A near miss of `value`: off by one, doubled, negated, another type of the same meaning."""
    if isinstance(value, bool):
        return rng.choice([not value, int(value), str(value)])
    if isinstance(value, int):
        return rng.choice([value + 1, value - 1, -value, value * 2, value * 1000, float(value), str(value), 0])
    if isinstance(value, float):
        return rng.choice([-value, value * 1e300, 0.0, int(value), str(value), value + 1])
    if isinstance(value, str):
        return rng.choice([value + "x", value.upper(), value[:-1], "", 5, [value]])
    if isinstance(value, list):
        return rng.choice([value[:-1], value + value[-1:], list(reversed(value)), [], value * 2, {}])
    return hostile_value(rng)


def paths(node: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, prefix + (i,))
    return out


def mutate_manifest(rng: random.Random, manifest: dict) -> bytes:
    m = copy.deepcopy(manifest)
    # Half the time aim at the fields a model is built from; else anywhere.
    focus = ("meta",) if rng.random() < 0.5 else ()
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        candidates = [p for p in paths(m) if p[:len(focus)] == focus and p] or paths(m)[1:]
        if not candidates:
            break
        path = rng.choice(candidates)
        parent = m
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        action = rng.randrange(6)
        if action == 0:
            parent[key] = hostile_value(rng)
        elif action in (1, 2):
            parent[key] = tweak(rng, parent[key])
        elif action == 3 and isinstance(parent, dict):
            del parent[key]
        elif action == 4 and isinstance(parent, dict):  # copies of an entry: overlapping parts, extra tensors
            for i in range(rng.choice([1, 2, 50])):
                parent[f"{key}_copy{i}"] = copy.deepcopy(parent[key])
        elif isinstance(parent, dict):
            parent[rng.choice(STRINGS[:6]) + "_extra"] = hostile_value(rng)
    text = json.dumps(m, sort_keys=True, separators=(",", ":"))  # allow_nan: NaN/Infinity literals may appear
    for depth in (20, 40, 200, 100_000):
        text = text.replace(f'"__DEEP{depth}__"', "[" * depth + "1" + "]" * depth)
    if rng.random() < 0.05:  # a literal Python's json accepts but JSON does not
        text = text.replace("1.5", "NaN", 1).replace("30.0", "Infinity", 1)
    return text.encode("utf-8")


def mutate_bytes(rng: random.Random, data: bytearray, lo: int = 0) -> bytearray:
    for _ in range(rng.choice([1, 1, 2, 4, 16])):
        if len(data) <= lo:
            break
        at = rng.randrange(lo, len(data))
        op = rng.randrange(6)
        if op == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[at] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        elif op == 2:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        elif op == 3:
            del data[at:at + rng.randrange(1, 64)]
        elif op == 4:
            data[at:at] = data[at:at + rng.randrange(1, 256)]
        else:
            width = rng.choice([1, 2, 4, 8])
            data[at:at + width] = rng.choice([b"\xff", b"\x00", b"\x7f\xff\xff\xff", b"\x00\x00\x80\x7f"])[:width] \
                .ljust(width, b"\x00")
    return data


def mutate_payload(rng: random.Random, manifest: dict, payload: bytes) -> bytes:
    data = bytearray(payload)
    floats = [(t, k, p) for t, e in manifest["tensors"].items() for k, p in e["parts"].items()
              if p["dtype"] in ("float32", "float16", "bfloat16") and p["nbytes"]]
    for _ in range(rng.choice([1, 2, 5])):
        _, _, part = rng.choice(floats)
        width = {"float32": 4, "float16": 2, "bfloat16": 2}[part["dtype"]]
        at = part["offset"] + width * rng.randrange(part["nbytes"] // width)
        value = rng.choice([float("nan"), float("inf"), -float("inf"), 1e30, 65504.0, -1e38])
        if width == 4:
            data[at:at + 4] = struct.pack("<f", value)
        else:
            data[at:at + 2] = torch.tensor([value], dtype=getattr(torch, part["dtype"])).view(torch.int16) \
                .numpy().astype("<i2").tobytes()
    return bytes(data)


def make_case(seeds: list[bytes], seed: int, index: int) -> tuple[str, bytes]:
    rng = random.Random(f"{seed}:{index}")
    base = rng.choice(seeds)
    kind = KINDS[index % len(KINDS)]
    if kind == "raw" and rng.random() < 0.5:  # anywhere after the magic, lengths left as they fall
        return kind, sign(bytes(mutate_bytes(rng, bytearray(base[:-32]), lo=4)))
    f = unframe(base)
    if kind == "raw":  # only the compressed body, its length fixed: the codecs see the damage
        packed = bytes(mutate_bytes(rng, bytearray(compress(f.compressor, f.body))))
        return kind, frame(f.compressor, packed, len(f.body))
    manifest, payload = split_body(f.body)
    manifest_json = f.body[4:4 + struct.unpack_from("<I", f.body)[0]]
    if kind == "body":
        body = bytes(mutate_bytes(rng, bytearray(f.body)))
    elif kind == "manifest":
        body = join_body(mutate_manifest(rng, manifest), payload)
    else:
        body = join_body(manifest_json, mutate_payload(rng, manifest, payload))
    compressor = rng.choice([f.compressor] * 3 + quant.compressor_names())
    raw_len = len(body)
    if kind == "body" and rng.random() < 0.1:  # a lying decompressed length
        raw_len = rng.choice([0, 1, raw_len - 1, raw_len + 1, 2 * raw_len, 1 << 30, 1 << 36, 2**64 - 1])
    return kind, frame(compressor, compress(compressor, body), raw_len)


# ----------------------------------------------------------------------------- bombs


def zstd_zero_bomb(prefix: bytes, zeros: int) -> bytes:
    """A zstd frame of `prefix` then `zeros` zero bytes, built from RLE blocks: a 64 GiB body in ~2 MB,
    with the true content size in the frame header, so only a reader that checks sizes refuses it."""
    block = 1 << 17  # zstd's largest block
    out = [struct.pack("<I", 0xFD2FB528), bytes([0xE0]), struct.pack("<Q", len(prefix) + zeros)]
    for lo in range(0, len(prefix), block):  # raw blocks (type 0)
        chunk = prefix[lo:lo + block]
        last = zeros == 0 and lo + block >= len(prefix)
        out += [(len(chunk) << 3 | 0 << 1 | last).to_bytes(3, "little"), chunk]
    full, rest = divmod(zeros, block)
    rle = (block << 3 | 1 << 1).to_bytes(3, "little") + b"\x00"
    out.append(rle * (full - (rest == 0)))
    last_size = rest or block
    out += [(last_size << 3 | 1 << 1 | 1).to_bytes(3, "little"), b"\x00"]
    return b"".join(out)


def _bomb_prefix(zeros: int) -> bytes:
    """A valid manifest declaring one fp32 tensor that fills `zeros` bytes: scoring it without
    limits would decompress and decode every byte."""
    n = zeros // 4
    manifest = {"format": "golf-artifact", "format_version": 1, "rule": "fp32",
                "meta": {"model": {"variant": "ar", "config": TINY}},
                "tensors": {"tok_emb.weight": {"scheme": "fp32", "shape": [n], "dtype": "float32", "meta": {},
                                               "parts": {"data": {"dtype": "float32", "shape": [n], "offset": 0,
                                                                  "nbytes": 4 * n}}}}}
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return struct.pack("<I", len(text)) + text


def bomb(zeros: int) -> bytes:
    """A zstd body of a manifest and `zeros` zero bytes, its true size in the header."""
    prefix = _bomb_prefix(zeros)
    return frame("zstd-22", zstd_zero_bomb(prefix, zeros), len(prefix) + zeros)


def lying_bomb(zeros: int) -> bytes:
    """A zlib body (zlib records no size) of `zeros` zero bytes behind a header declaring the largest
    body golf accepts: only the bound on decompression itself stops it."""
    from quant.limits import MAX_BODY_BYTES

    z = zlib.compressobj(1)
    chunk = bytes(16 << 20)
    packed = [z.compress(_bomb_prefix(zeros))] + [z.compress(chunk) for _ in range(zeros // len(chunk))]
    return frame("zlib-9", b"".join([*packed, z.flush()]), MAX_BODY_BYTES)


# ----------------------------------------------------------------------------- running one case


@dataclass
class Outcome:
    status: str  # refused | accepted | failure
    reason: str  # the error line, or what went wrong
    seconds: float
    peak_rss_bytes: int


def _child(argv: list[str], out_path: Path, err_path: Path, limit_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    signal.alarm(int(2 * MAX_CASE_SECONDS))
    out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    err_fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), write_through=True)
    sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), write_through=True)
    code = 0
    try:
        from golf.cli import main
        code = main(argv)
    except BaseException as e:  # noqa: BLE001 - what escapes golf's own handling is the finding
        sys.stderr.write(f"FOREIGN {type(e).__name__}: {str(e)[:300]}\n")
        code = 99
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_case(artifact: Path, data_dir: Path, work: Path, limit_bytes: int = ADDRESS_LIMIT_BYTES) -> Outcome:
    argv = ["score", str(artifact), "--data", str(data_dir), "--json", "--no-progress", "--device", "cpu"]
    out_path, err_path = work / "stdout", work / "stderr"
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        _child(argv, out_path, err_path, limit_bytes)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    rss = usage.ru_maxrss * 1024
    out = out_path.read_text(errors="replace")
    err = err_path.read_text(errors="replace")
    return Outcome(*classify(status, out, err), seconds, rss)


def _strict_json(text: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} in JSON output")
    return json.loads(text, parse_constant=refuse)


def classify(status: int, out: str, err: str) -> tuple[str, str]:
    if os.WIFSIGNALED(status):
        return "failure", f"killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
    code = os.WEXITSTATUS(status)
    lines = err.strip().splitlines()
    if code == 99:
        return "failure", (lines[-1] if lines else "FOREIGN ?")
    if code == 2:
        if len(lines) == 1 and lines[0].startswith("golf: error: ") and out == "":
            return "refused", lines[0]
        return "failure", f"exit 2 without one error line: {err[-300:]!r}"
    if code == 0:
        try:
            report = _strict_json(out)
        except ValueError as e:
            return "failure", f"accepted with invalid JSON output ({e})"
        bpb = report.get("val_bpb")
        if not (isinstance(bpb, float) and bpb == bpb and abs(bpb) != float("inf")):
            return "failure", f"accepted a non-finite val_bpb {bpb!r}"
        if lines:
            return "failure", f"accepted but wrote to stderr: {err[-300:]!r}"
        return "accepted", f"val_bpb {bpb:.4f}"
    return "failure", f"exit {code}: {err[-300:]!r}"


def judge(o: Outcome) -> Outcome:
    """Over the time or memory bound is a failure whatever the verdict."""
    if o.status != "failure" and o.seconds > MAX_CASE_SECONDS:
        return Outcome("failure", f"took {o.seconds:.1f} s ({o.status}: {o.reason})", o.seconds, o.peak_rss_bytes)
    if o.status != "failure" and o.peak_rss_bytes > MAX_CASE_RSS_BYTES:
        return Outcome("failure", f"peak RSS {o.peak_rss_bytes >> 20} MiB ({o.status}: {o.reason})", o.seconds,
                       o.peak_rss_bytes)
    return o


def tiny_val_dir(work: Path) -> Path:
    data = work / "val"
    data.mkdir()
    tokens = read_shard(sorted(embedded.shards_dir().glob("fineweb_val_*.bin"))[0])[:VAL_TOKENS]
    write_shard(data / "fineweb_val_000000.bin", tokens)
    return data


# ----------------------------------------------------------------------------- the campaign


def fuzz(cases: int, seed: int, work: Path, *, start: int = 0, progress: bool = False) -> dict:
    seeds = seed_artifacts()
    data = tiny_val_dir(work)
    artifact = work / "case.golf"
    counts: Counter = Counter()
    by_kind: dict[str, Counter] = {k: Counter() for k in KINDS}
    reasons: Counter = Counter()
    failures: list[dict] = []
    slowest = (0.0, -1)
    largest = (0, -1)
    t0 = time.perf_counter()
    for index in range(start, start + cases):
        kind, data_bytes = make_case(seeds, seed, index)
        artifact.write_bytes(data_bytes)
        o = judge(run_case(artifact, data, work))
        counts[o.status] += 1
        by_kind[kind][o.status] += 1
        slowest = max(slowest, (o.seconds, index))
        largest = max(largest, (o.peak_rss_bytes, index))
        if o.status == "refused":
            reasons[_gist(o.reason, artifact)] += 1
        if o.status == "failure":
            failures.append({"case": index, "kind": kind, "reason": o.reason, "seconds": round(o.seconds, 2),
                             "peak_rss_mib": o.peak_rss_bytes >> 20})
        if progress and (index - start + 1) % 500 == 0:
            print(f"  {index - start + 1}/{cases} cases, {dict(counts)}, {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)
    return {"cases": cases, "seed": seed, "first_case": start, "outcomes": dict(counts),
            "by_kind": {k: dict(v) for k, v in by_kind.items()},
            "failures": len(failures), "failure_examples": failures[:50],
            "foreign_exceptions": sum(f["reason"].startswith("FOREIGN") for f in failures),
            "accepted_nonfinite": sum("non-finite" in f["reason"] for f in failures),
            "max_case_seconds": round(slowest[0], 3), "slowest_case": slowest[1],
            "max_case_peak_rss_mib": largest[0] >> 20, "largest_case": largest[1],
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "top_refusals": dict(reasons.most_common(25))}


def _gist(line: str, artifact: Path) -> str:
    """An error line without the artifact's path and with digits masked, to count refusals by kind."""
    text = line.removeprefix("golf: error: ").replace(f"{artifact}: ", "").replace(str(artifact), "ARTIFACT")
    return "".join("#" if c.isdigit() else c for c in text)[:90]


def run_standalone(argv: list[str], work: Path) -> Outcome:
    """`python -m golf ARGV` as a fresh process (imports included), its peak RSS from wait4."""
    out_path, err_path = work / "stdout", work / "stderr"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "golf", *argv], stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    verdict = classify(status, out_path.read_text(errors="replace"), err_path.read_text(errors="replace"))
    return Outcome(*verdict, seconds, usage.ru_maxrss * 1024)


BOMBS = (("1 GiB", 1 << 30, bomb), ("64 GiB", 64 << 30, bomb),
         ("1 GiB zlib stream under a header declaring the largest body", 1 << 30, lying_bomb))


def run_bombs(work: Path, count: int = len(BOMBS)) -> list[dict]:
    """Each bomb through `golf score` twice: in a forked child like the fuzz cases, and as a fresh
    process (what a user runs); peak RSS of both. The acceptance bound is 512 MB for the first two."""
    seed_artifacts()
    data = tiny_val_dir(work) if not (work / "val").exists() else work / "val"
    out = []
    for label, zeros, build in BOMBS[:count]:
        path = work / f"bomb-{len(out)}.golf"
        path.write_bytes(build(zeros))
        forked = run_case(path, data, work)
        fresh = run_standalone(["score", str(path), "--data", str(data), "--json", "--no-progress"], work)
        out.append({"bomb": label, "file_bytes": path.stat().st_size, "body_bytes": zeros,
                    "status": fresh.status, "error": fresh.reason.replace(f"{path}: ", ""),
                    "seconds": round(fresh.seconds, 3), "peak_rss_mib": round(fresh.peak_rss_bytes / 2**20, 1),
                    "forked_status": forked.status, "forked_peak_rss_mib": round(forked.peak_rss_bytes / 2**20, 1),
                    "ok": fresh.status == forked.status == "refused"
                    and max(fresh.peak_rss_bytes, forked.peak_rss_bytes) < 512 << 20})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="first case index (cases are reproducible by index)")
    ap.add_argument("--only", type=int, default=None, help="replay one case and print what golf printed")
    ap.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    ap.add_argument("--bombs", type=int, default=len(BOMBS),
                    help="run the first N bombs (the first 2 are the acceptance bombs)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="golf-fuzz-") as tmp:
        work = Path(tmp)
        if args.only is not None:
            kind, data_bytes = make_case(seed_artifacts(), args.seed, args.only)
            (work / "case.golf").write_bytes(data_bytes)
            o = judge(run_case(work / "case.golf", tiny_val_dir(work), work))
            print(f"case {args.only} ({kind}): {o.status}: {o.reason} [{o.seconds:.2f} s, "
                  f"{o.peak_rss_bytes >> 20} MiB]")
            print((work / "stderr").read_text()[-3000:])
            return 0 if o.status != "failure" else 1
        result = fuzz(args.cases, args.seed, work, start=args.start, progress=True)
        result["bombs"] = run_bombs(work, args.bombs)
    result.update(command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), date=datetime.date.today().isoformat(),
                  machine=f"{platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}, "
                          f"torch {torch.__version__}",
                  limits={"max_case_seconds": MAX_CASE_SECONDS, "max_case_rss_bytes": MAX_CASE_RSS_BYTES,
                          "address_space_limit_bytes": ADDRESS_LIMIT_BYTES, "val_tokens": VAL_TOKENS})
    text = json.dumps(result, indent=2, sort_keys=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    ok = result["failures"] == 0 and all(b["ok"] for b in result["bombs"][:2])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
