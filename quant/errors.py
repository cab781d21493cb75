"""The two exception types of the quant package.

Both are `ValueError`s because every one of them means "this input is wrong", never "the code is
broken". `ArtifactError` subclasses `QuantError` so a caller can catch everything this package
raises for bad input with one `except QuantError`, while still telling file problems apart.
Messages are one line: what is wrong and, where it helps, what to do.
"""

from __future__ import annotations


class QuantError(ValueError):
    """A scheme, rule or compressor was asked for something it cannot do."""


class ArtifactError(QuantError):
    """An artifact file is missing, truncated, corrupted, too new or malformed."""
