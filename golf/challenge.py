"""The challenge's fixed numbers, in one place: every other module imports them from here.

From the official rules (shared reference challenge.md): a submission's code bytes plus compressed
model bytes must not exceed CAP_BYTES (decimal megabytes: 16,000,000, not 16 MiB); training and
evaluation each get TRAIN_SECONDS / EVAL_SECONDS on GPUS H100s; a new record must beat the previous
one by at least SIGNIFICANCE_NATS of validation loss at p < SIGNIFICANCE_P.
"""

from __future__ import annotations

CAP_BYTES = 16_000_000
TRAIN_SECONDS = 600.0
EVAL_SECONDS = 600.0
GPUS = 8
SIGNIFICANCE_NATS = 0.005
SIGNIFICANCE_P = 0.01
