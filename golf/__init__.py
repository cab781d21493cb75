"""golf: a toolkit for the Parameter Golf challenge (train, quantize, pack and score under 16 MB)."""

__version__ = "0.1.0"
