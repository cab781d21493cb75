"""Where an artifact's bytes go: per-tensor compressed bytes, bytes/param and reconstruction error.

The body is compressed as a whole, so no tensor "owns" compressed bytes. We estimate each share by
compressing every segment (the manifest, each tensor's payload bytes) alone with the artifact's own
compressor, then split the real compressed body size over the segments in proportion to those
standalone sizes. Largest-remainder rounding keeps the integers summing to the body size exactly,
and the container row (header + digest) closes the gap, so the rows always add up to the file.

Only the manifest, `quant.open_raw`, `quant.decode_quantized` (the tensors as stored),
`quant.dequantize` and `quant.read_artifact` are used: nothing here knows any scheme, so new schemes
show up without changes. Each tensor's role comes from the model the manifest describes
(`tensor_roles()` of a meta-device build), and the totals are grouped by it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from golf.challenge import CAP_BYTES
from golf.errors import GolfError
from golf.models import config_class, roles_from_meta
from quant import ArtifactError, QuantError, compress, decode_quantized, dequantize, open_raw, read_artifact

RAW_NAME = "model_raw.golf"  # the unquantized fp32 copy train_gpt.py writes beside model.golf


def resolve_artifact(path: Path) -> Path:
    """A run folder means its model.golf, as in `golf score`."""
    return path / "model.golf" if path.is_dir() else path


def resolve_reference(path: Path) -> Path:
    """A reference given as a run folder means its model_raw.golf."""
    return path / RAW_NAME if path.is_dir() else path


def default_reference(artifact: Path) -> Path | None:
    """`model_raw.golf` beside the artifact, unless missing or the artifact itself."""
    ref = artifact.parent / RAW_NAME
    if not ref.is_file():
        return None
    try:
        if artifact.exists() and os.path.samefile(ref, artifact):
            return None
    except OSError:
        return None
    return ref


def largest_remainder(total: int, weights: list[int]) -> list[int]:
    """Split `total` into integers proportional to `weights` that sum to `total` exactly.

    Integer arithmetic throughout, so the result does not depend on float rounding; ties in the
    remainder go to the earlier index, which keeps the split deterministic.
    """
    if not weights:
        if total:
            raise ValueError("cannot split a non-zero total over no weights")
        return []
    if any(w < 0 for w in weights):
        raise ValueError("weights must be non-negative")
    denom = sum(weights)
    if denom == 0:  # nothing to go by: an even split is the least surprising
        weights, denom = [1] * len(weights), len(weights)
    quotas = [divmod(total * w, denom) for w in weights]
    out = [q for q, _ in quotas]
    leftover = total - sum(out)  # < len(weights), since each floor loses less than one
    for i in sorted(range(len(weights)), key=lambda i: (-quotas[i][1], i))[:leftover]:
        out[i] += 1
    return out


def _unreferenced(spans: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """Payload ranges no part claims. A writer packs without gaps, but a tool should not assume it."""
    gaps, pos = [], 0
    for start, end in sorted(spans):
        if start > pos:
            gaps.append((pos, start))
        pos = max(pos, end)
    if pos < size:
        gaps.append((pos, size))
    return gaps


def _rel_errors(decoded: dict[str, torch.Tensor], reference: Path) -> dict[str, float | None]:
    """‖w − ŵ‖₂ / ‖w‖₂ per tensor, w from the reference and ŵ the artifact's dequantized tensor."""
    try:
        ref = read_artifact(reference).state_dict
    except ArtifactError as e:  # say which of the two files is bad
        raise ArtifactError(f"reference {e}") from None
    names = sorted(decoded)
    missing = [n for n in names if n not in ref]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise GolfError(f"reference {reference} lacks {len(missing)} of the artifact's tensors: {shown}")
    out: dict[str, float | None] = {}
    for name in names:
        w, w_hat = ref[name], decoded[name]
        if tuple(w.shape) != tuple(w_hat.shape):
            raise GolfError(f"tensor {name}: shape {list(w_hat.shape)} in the artifact but "
                            f"{list(w.shape)} in reference {reference}")
        # float64 so the error of an fp32 tensor is not itself dominated by fp32 rounding.
        w64, w_hat64 = w.to(torch.float64), w_hat.to(torch.float64)
        norm, diff = torch.linalg.vector_norm(w64).item(), torch.linalg.vector_norm(w64 - w_hat64).item()
        # A zero reference has no relative error; None (not inf) keeps the JSON strict.
        out[name] = diff / norm if norm > 0 else (0.0 if diff == 0 else None)
    return out


def _row(name: str, kind: str, *, scheme: str | None = None, role: str | None = None,
         shape: list[int] | None = None, params: int = 0, raw_bytes: int, alone_bytes: int, nbytes: int,
         file_bytes: int, rel_error: float | None = None) -> dict[str, Any]:
    return {"name": name, "kind": kind, "scheme": scheme, "role": role, "shape": shape, "params": params,
            "raw_bytes": raw_bytes, "alone_bytes": alone_bytes, "bytes": nbytes,
            "share": nbytes / file_bytes if file_bytes else 0.0,
            "bytes_per_param": nbytes / params if params else None, "rel_error": rel_error}


def _roles(meta: dict, names: set[str]) -> tuple[dict[str, str], str | None]:
    """Each tensor's role from the model the manifest describes, or none (and why) when it describes
    none or a different set of tensors: inspecting never needs the model, so this is not an error."""
    try:
        roles = roles_from_meta(meta)
    except GolfError as e:
        return {}, f"no roles: {e}"
    if set(roles) != names:
        return {}, "no roles: the artifact's tensors are not the ones its model description has"
    return roles, None


def set_options(meta: dict) -> dict[str, Any]:
    """What the run changed from the baseline: model config fields off their family's defaults, and
    the trainer's options (EMA, MIN_LR, Muon variants, ...) that are on. Empty when unknown."""
    spec = meta.get("model")
    if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict):
        return {}
    try:
        defaults = {f.name: f.default for f in dataclasses.fields(config_class(spec.get("variant")))}
    except (GolfError, TypeError):
        return {}
    out = {k: v for k, v in spec["config"].items() if k in defaults and v != defaults[k]}
    run = meta.get("run")
    training = run.get("training") if isinstance(run, dict) else None
    if isinstance(training, dict):
        out.update({k: v for k, v in training.items() if isinstance(v, (int, float)) and v})
    return out


def _by_role(tensors: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for row in tensors:
        group = out.setdefault(row["role"] or "(unknown)", {"tensors": 0, "params": 0, "bytes": 0})
        group["tensors"] += 1
        group["params"] += row["params"]
        group["bytes"] += row["bytes"]
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["bytes"]))


def inspect_artifact(path: str | os.PathLike, *, reference: str | os.PathLike | None = None,
                     sort: str = "bytes", progress: bool = False) -> dict[str, Any]:
    """The byte ledger of the artifact at `path` (or a run folder); see `golf inspect --help`."""
    artifact = resolve_artifact(Path(path))
    if sort not in ("bytes", "name"):
        raise GolfError(f"unknown sort key {sort!r} (use bytes or name)")
    ref_path = resolve_reference(Path(reference)) if reference is not None else None
    try:
        data = artifact.read_bytes()
    except FileNotFoundError:
        raise GolfError(f"artifact not found: {artifact}") from None
    except OSError as e:
        raise GolfError(f"cannot read artifact {artifact}: {e.strerror or e}") from None
    try:
        raw = open_raw(data)
        # Decoding checks every part against its dtype, shape and the payload bounds before we
        # slice the payload with offsets from the manifest; the error column needs it anyway.
        stored = decode_quantized(data)
        decoded = dequantize(stored.tensors)
    except QuantError as e:  # read once as bytes, so name the file the way read_artifact does
        raise ArtifactError(f"{artifact}: {e}") from None
    errors = _rel_errors(decoded, ref_path) if ref_path else None
    del decoded  # the dequantized copy can be several times the artifact's size
    roles, roles_note = _roles(stored.meta, set(stored.tensors))

    # Segments, in body order: the manifest (with its u32 length), each tensor, any unclaimed gap.
    payload = raw.payload
    # Kinds travel with the segments so a tensor named "manifest" cannot be mistaken for one.
    segments: list[tuple[str, str, bytes]] = [("manifest", "manifest", raw.body[: len(raw.body) - len(payload)])]
    spans: list[tuple[int, int]] = []
    entries = raw.manifest["tensors"]
    for name in sorted(entries):
        parts = [entries[name]["parts"][k] for k in sorted(entries[name]["parts"])]
        spans += [(p["offset"], p["offset"] + p["nbytes"]) for p in parts]
        segments.append((name, "tensor", b"".join(payload[p["offset"]: p["offset"] + p["nbytes"]] for p in parts)))
    gaps = _unreferenced(spans, len(payload))
    if gaps:
        segments.append(("(unreferenced payload)", "unreferenced", b"".join(payload[a:b] for a, b in gaps)))

    # Progress in bytes, not tensors: a few big matrices take nearly all of the time.
    alone: list[int] = []
    with tqdm(total=sum(len(seg) for *_, seg in segments), desc=f"compress each tensor ({raw.compressor})",
              unit="B", unit_scale=True, unit_divisor=1024, disable=not progress or None, leave=False) as bar:
        for *_, seg in segments:
            alone.append(len(compress(raw.compressor, seg)))
            bar.update(len(seg))
    shares = largest_remainder(raw.body_nbytes, alone)

    rows: list[dict[str, Any]] = []
    for (name, kind, seg), alone_n, share in zip(segments, alone, shares, strict=True):
        if kind == "tensor":
            entry = entries[name]
            rows.append(_row(name, "tensor", scheme=entry["scheme"], role=roles.get(name), shape=list(entry["shape"]),
                             params=math.prod(entry["shape"]), raw_bytes=len(seg), alone_bytes=alone_n,
                             nbytes=share, file_bytes=raw.nbytes,
                             rel_error=errors[name] if errors else None))
        else:
            rows.append(_row(name, kind, raw_bytes=len(seg), alone_bytes=alone_n, nbytes=share,
                             file_bytes=raw.nbytes))
    frame = raw.header_nbytes + raw.digest_nbytes
    rows.append(_row("container", "container", raw_bytes=frame, alone_bytes=frame, nbytes=frame,
                     file_bytes=raw.nbytes))

    tensors = [r for r in rows if r["kind"] == "tensor"]
    others = [r for r in rows if r["kind"] != "tensor"]
    tensors.sort(key=(lambda r: (-r["bytes"], r["name"])) if sort == "bytes" else (lambda r: r["name"]))
    total = sum(r["bytes"] for r in rows)
    if total != raw.nbytes:  # a bug, not bad input: the split above is exact by construction
        raise AssertionError(f"attributed {total} bytes, the file has {raw.nbytes}")
    params = sum(r["params"] for r in tensors)
    meta_model = raw.manifest["meta"].get("model")
    return {
        "artifact": str(artifact),
        "reference": str(ref_path) if ref_path else None,
        "note": None if ref_path else
        f"no reference: rel_error needs --reference REF.golf (e.g. the run's {RAW_NAME})",
        "roles_note": roles_note,
        "by_role": _by_role(tensors),
        "variant": meta_model.get("variant") if isinstance(meta_model, dict) else None,
        "options": set_options(raw.manifest["meta"]),
        "rows": tensors + others,
        "totals": {
            "params": params, "bytes": raw.nbytes, "bytes_per_param": raw.nbytes / params if params else None,
            "limit": CAP_BYTES, "headroom": CAP_BYTES - raw.nbytes, "rule": raw.manifest["rule"],
            "compressor": raw.compressor, "header_bytes": raw.header_nbytes, "digest_bytes": raw.digest_nbytes,
            "body_bytes": raw.body_nbytes, "body_raw_bytes": len(raw.body),
        },
    }
