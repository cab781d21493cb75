"""The scores submission.json claims, against the scores its logs show.

Conventions records use, accepted: the headline val_bpb is the mean over the seeds of one
evaluation (any scored line, not only the first final: sliding-window, TTT and re-evaluation
lines come after it), or one seed's score when the README or submission.json says which seed
(a warning when nothing says so, since it is then usually the best seed); a claim is rounded or
truncated to the decimals it is written with; per-seed claims match a log of that seed, which
may be an evaluation-only log of the same run. A claim no log backs is an error for the score
(val_bpb, the one that ranks) and a warning for the rest (val_loss, steps, artifact bytes), since
the checker recomputes sizes itself.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from typing import Any

from golf.record import schema
from golf.record.findings import Findings
from golf.record.logs import LogFacts, Score

MAX_COMBINATIONS = 4096  # seeds × candidate lines to try for a mean; real folders need a few dozen
Match = tuple[LogFacts, Score]


def tolerance(value: float) -> float:
    """One unit in the last decimal the claim is written with (1.1556 → 1e-4), within [1e-8, 1e-4]."""
    text = repr(float(value))
    decimals = len(text.partition(".")[2]) if "e" not in text and "." in text else 8
    return min(max(10.0 ** -decimals, 1e-8), 1e-4) + 1e-12


def seed_key(key: Any) -> int | None:
    m = re.search(r"\d+", str(key))
    return int(m[0]) if m else None


def claimed_seeds(data: dict) -> list[int]:
    """The seeds submission.json names: `seeds` as a list or a dict, else seed_results' keys."""
    seeds = data.get("seeds")
    if isinstance(seeds, dict):
        seeds = list(seeds)
    if not isinstance(seeds, list) and isinstance(data.get("seed_results"), dict):
        seeds = list(data["seed_results"])
    parsed = [seed_key(s) for s in seeds] if isinstance(seeds, list) else []
    return [s for s in parsed if s is not None]


def _value(score: Score, field: str) -> float:
    return score.val_bpb if field == "val_bpb" else score.val_loss


def _describe(match: Match, field: str) -> str:
    log, score = match
    seed = f", seed {log.seed}" if log.seed is not None else ""
    return f"{log.name} ({score.label.split()[0]}{seed}: {_value(score, field):.8f})"


def _precision(score: Score, field: str) -> int:
    return len(repr(_value(score, field)))


def _single(claim: float, logs: list[LogFacts], field: str) -> Match | None:
    """The most precise score of these logs that equals the claim (later lines first on ties)."""
    tol = tolerance(claim)
    found = [(log, s) for log in logs for s in reversed(log.scores) if abs(_value(s, field) - claim) <= tol]
    return max(found, key=lambda m: _precision(m[1], field), default=None)


def _mean(claim: float, groups: list[list[LogFacts]], field: str) -> list[Match] | None:
    """A choice of one score per group, all of one evaluation, whose mean is the claim."""
    tol = tolerance(claim)
    families = dict.fromkeys(s.family for logs in groups for log in logs for s in log.scores)
    for family in families:
        options = [sorted({_value(s, field): (log, s) for log in logs for s in log.scores if s.family == family}
                          .values(), key=lambda m: -_precision(m[1], field)) for logs in groups]
        if not all(options) or math.prod(len(o) for o in options) > MAX_COMBINATIONS:
            continue
        for combo in itertools.product(*options):
            if abs(statistics.fmean(_value(s, field) for _, s in combo) - claim) <= tol:
                return list(combo)
    return None


def _groups(scored: list[LogFacts], seeds: list[int]) -> list[list[LogFacts]]:
    if seeds:
        return [[log for log in scored if seed in log.seeds] for seed in dict.fromkeys(seeds)]
    by_seed: dict[Any, list[LogFacts]] = {}
    for log in scored:
        by_seed.setdefault(log.seed if log.seed is not None else log.name, []).append(log)
    return list(by_seed.values())


def _family_mean(groups: list[list[LogFacts]], family: str, field: str) -> float | None:
    values = [[_value(s, field) for log in logs for s in log.scores if s.family == family] for logs in groups]
    return statistics.fmean(v[-1] for v in values) if all(values) else None


def _diagnose(claim: float, scored: list[LogFacts], size: int, field: str) -> str:
    """Where the number does come from, if anywhere: one log, or the mean of `size` logs."""
    single = _single(claim, scored, field)
    if single is not None:
        return f"; it is {_describe(single, field)}"
    if 1 < size <= len(scored) and math.comb(len(scored), size) <= MAX_COMBINATIONS:
        for subset in itertools.combinations(scored, size):
            match = _mean(claim, [[log] for log in subset], field)
            if match:
                return f"; it is the mean of {', '.join(_describe(m, field) for m in match)}"
    finals = ", ".join(f"{log.name}: {log.val_bpb if field == 'val_bpb' else log.val_loss}" for log in scored[:6])
    return f" (the logs' final scores: {finals})" if finals else ""


def _primary_stated(data: dict, readme: str, seed: int | None) -> bool:
    """submission.json's `seed`, or a README line naming that seed as the submitted one."""
    if seed is None:
        return False
    if seed_key(data.get("seed")) == seed:
        return True
    pattern = re.compile(rf"(?i)(submitted|primary|reported|headline)[^\n]*\bseed\W{{0,3}}{seed}\b"
                         rf"|\bseed\W{{0,3}}{seed}\b[^\n]*(submitted|primary|reported|headline)")
    return pattern.search(readme) is not None


def check_headline(data: dict, field: str, scored: list[LogFacts], readme: str, findings: Findings) -> list[Match]:
    """The headline claim (val_bpb or val_loss) against the logs; returns the scores it rests on."""
    raw, key = schema.claimed(data, field)
    claim = schema.as_number(raw)
    if key is None or claim is None:
        return []
    if key != field:
        findings.warn(f"submission.json has no {field!r}; reading the score from {key!r}")
    if isinstance(raw, str):
        findings.warn(f"submission.json {key} is a string ({raw!r}); read as {claim}")
    complain = findings.error if field == "val_bpb" else findings.mismatch
    if not scored:
        complain(f"submission.json {key} {raw} is not backed by any log: no log has a scored "
                 f"'… val_loss:X val_bpb:Y' line")
        return []
    seeds = claimed_seeds(data)
    groups = [g for g in _groups(scored, seeds) if g]
    if len(groups) > 1:
        mean = _mean(claim, groups, field)
        if mean is not None:
            if len(seeds) > len(groups):
                findings.note(f"{key} {raw} is the mean over the {len(groups)} seeds that have logs")
            return mean
    single = _single(claim, [log for g in groups for log in g], field)
    if single is None:
        complain(f"submission.json {key} {raw} is not backed by the logs"
                 f"{' of seeds ' + ', '.join(map(str, seeds)) if seeds else ''}"
                 f"{_diagnose(claim, scored, max(len(seeds), 1), field)}")
        return []
    if len(groups) > 1 and findings.strict:
        complain(f"submission.json {key} {raw} is {_describe(single, field)}, not the mean over the "
                 f"{len(groups)} seeds that golf writes")
    elif len(groups) > 1 and field == "val_bpb":
        log, score = single
        mean = _family_mean(groups, score.family, field)
        which = f"{key} {raw} is {_describe(single, field)}, one seed of {len(groups)}" + \
                (f" whose mean is {mean:.8f}" if mean is not None else "")
        if _primary_stated(data, readme, log.seed):
            findings.note(f"{which}; the submission states that seed as its primary one")
        else:
            best = all(_value(score, field) <= (m if m is not None else math.inf) for m in
                       [_family_mean([g], score.family, field) for g in groups])
            findings.warn(f"{which}: the headline is a single seed{' (the best)' if best else ''} and neither "
                          f"submission.json (`seed`) nor README.md says so")
    return [single]


def check_seed_results(data: dict, scored: list[LogFacts], findings: Findings) -> None:
    """Each seed_results entry against the logs of that seed; each named seed must have a log."""
    results = data.get("seed_results") if isinstance(data.get("seed_results"), dict) else {}
    seeds = claimed_seeds(data)
    duplicated = sorted({s for s in seeds if seeds.count(s) > 1})
    if duplicated:
        findings.error(f"submission.json names seed(s) {', '.join(map(str, duplicated))} more than once")
    for seed in dict.fromkeys(seeds):
        if not any(seed in log.seeds for log in scored) and not any(seed_key(k) == seed for k in results):
            findings.error(f"submission.json names seed {seed} but no log of seed {seed} is in the folder")
    for key, claim in results.items():
        seed = seed_key(key)
        logs = [log for log in scored if seed is not None and seed in log.seeds]
        claim = claim if isinstance(claim, dict) else {}
        bpb = schema.as_number(claim.get("val_bpb"))
        if not logs:
            findings.error(f"submission.json seed_results[{key!r}]: no log of seed {key} is in the folder"
                           f"{_diagnose(bpb, scored, 1, 'val_bpb') if bpb is not None else ''}")
            continue
        if bpb is not None and _single(bpb, logs, "val_bpb") is None:
            findings.error(f"submission.json seed_results[{key!r}] val_bpb {claim['val_bpb']} is in no log of seed "
                           f"{key}{_diagnose(bpb, scored, 1, 'val_bpb')}")
        loss = schema.as_number(claim.get("val_loss"))
        if loss is not None and _single(loss, logs, "val_loss") is None:
            findings.mismatch(f"submission.json seed_results[{key!r}] val_loss {claim['val_loss']} is in no log "
                              f"of seed {key}")
        _check_count(findings, key, "steps", claim.get("steps"), {log.steps for log in logs})
        _check_count(findings, key, "artifact_bytes", claim.get("artifact_bytes"),
                     {n for log in logs for n in (log.bytes_total, log.bytes_model)})


def _check_count(findings: Findings, key: str, name: str, claim: Any, logged: set[int | None]) -> None:
    logged.discard(None)
    if schema.is_kind("int", claim) and logged and claim not in logged:
        findings.mismatch(f"submission.json seed_results[{key!r}] {name} {claim:,} but the seed's log says "
                          f"{', '.join(f'{n:,}' for n in sorted(logged))}")
