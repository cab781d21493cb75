"""The record track's rules, read from the logs: 8 GPUs, the training and evaluation clocks, the
seeds; and the seed bookkeeping every folder needs (a log named for one seed that ran another,
one seed run twice and counted as two).

Clocks as practised: a run capped by `stopping_early: wallclock_cap` stops at the first step
past the cap, so the official logs show 600.04–600.14 s; up to two steps past the cap is
accepted after that line, nothing past it without it. Evaluation has its own clock: the
`total_eval_time` a log prints, else the eval_time of the score the record claims.
"""

from __future__ import annotations

from golf.challenge import EVAL_SECONDS, GPUS, TRAIN_SECONDS
from golf.record.findings import Findings
from golf.record.logs import LogFacts, Score

RECORD_TRACK = "10min_16mb"
OVERSHOOT_STEPS = 2
COMPLIANCE_KEYS = {  # submission.json `compliance` keys records use → the finding that refutes them
    "train_under_600s": "train", "eval_under_600s": "eval", "artifact_under_16mb": "cap",
    "artifact_under_16_mb": "cap", "three_seeds": "seeds",
}


def _over_train_clock(log: LogFacts) -> float | None:
    """Seconds past the training clock beyond the accepted overshoot, or None."""
    if log.train_time_ms is None:
        return None
    allowed = 1000 * TRAIN_SECONDS + (OVERSHOOT_STEPS * (log.step_avg_ms or 0.0) if log.stopped_early else 0.0)
    return (log.train_time_ms - 1000 * TRAIN_SECONDS) / 1000 if log.train_time_ms > allowed else None


def _eval_ms(log: LogFacts, claimed: dict[str, Score]) -> float | None:
    if log.total_eval_ms is not None:
        return log.total_eval_ms
    score = claimed.get(log.name) or (log.scores[-1] if log.scores else None)
    return score.eval_ms if score is not None else None


def check_record_track(logs: list[LogFacts], claimed: dict[str, Score], findings: Findings) -> set[str]:
    """World size and both clocks, per log; returns which rules some log breaks ('train', 'eval')."""
    broken: set[str] = set()
    overshoots = []
    for log in logs:
        for size in log.world_sizes:
            if size != GPUS:
                findings.error(f"{log.name}: world_size {size}; the record track runs on {GPUS} GPUs")
        over = _over_train_clock(log)
        if over is not None:
            broken.add("train")
            findings.error(f"{log.name}: trained for {log.train_time_ms / 1000:.1f} s, over the {TRAIN_SECONDS:.0f} s "
                           f"training clock{'' if log.stopped_early else ' (and no stopping_early line)'}")
        elif log.train_time_ms is not None and log.train_time_ms > 1000 * TRAIN_SECONDS:
            overshoots.append(f"{log.name} {log.train_time_ms / 1000:.3f} s")
        eval_ms = _eval_ms(log, claimed)
        if eval_ms is not None and eval_ms > 1000 * EVAL_SECONDS:
            broken.add("eval")
            findings.error(f"{log.name}: evaluation took {eval_ms / 1000:.1f} s, over the {EVAL_SECONDS:.0f} s "
                           f"evaluation clock")
    if overshoots:
        findings.note(f"stopped at most {OVERSHOOT_STEPS} steps past the {TRAIN_SECONDS:.0f} s clock after "
                      f"stopping_early, as capped runs do: {', '.join(overshoots)}")
    if logs and not any(log.world_sizes for log in logs):
        findings.note(f"no log states its world size: {GPUS} GPUs not checked")
    return broken


def check_seeds(logs: list[LogFacts], backing: list[LogFacts], record: bool, findings: Findings) -> int:
    """Seed bookkeeping; returns the number of distinct seeds the folder has training logs of."""
    for log in logs:
        if log.name_seed is not None and log.seeds and log.name_seed not in log.seeds:
            findings.error(f"{log.name} is named for seed {log.name_seed} but the run in it says seed "
                           f"{', '.join(map(str, log.seeds))}")
    trained = [log for log in logs if log.trained and log.seed is not None]
    behind = {id(log) for log in backing}
    for seed in sorted({log.seed for log in trained}):
        same = [log for log in trained if log.seed == seed]
        names = ", ".join(log.name for log in same)
        if len(same) > 1 and (record or sum(id(log) in behind for log in same) > 1):
            findings.error(f"seed {seed} trained more than once ({names}): runs of one seed are not "
                           f"independent samples")
        elif len(same) > 1:
            findings.note(f"{len(same)} runs with seed {seed} ({names}): separate experiments, not seeds of one")
    seeds = {log.seed for log in trained}
    if record and len(seeds) < 3:
        findings.warn(f"the folder has training logs of {len(seeds)} seed(s): a new record needs enough runs "
                      f"for p < 0.01, usually 3 seeds")
    return len(seeds)


def check_compliance(data: dict, refuted: set[str], findings: Findings) -> None:
    """submission.json's own `compliance` statements that a finding contradicts."""
    statements = data.get("compliance")
    if not isinstance(statements, dict):
        return
    for key, value in statements.items():
        if value is True and COMPLIANCE_KEYS.get(key) in refuted:
            findings.warn(f"submission.json compliance.{key} is true, but the check above says otherwise")
