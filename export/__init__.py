"""ONNX export of golf models: `golf export ARTIFACT --onnx OUT` (see export.onnx_export).

Modules: onnx_graph (a small graph builder with fixed IR/opset versions), weights (artifact
tensors as stored → initializers and the ops reading them), ar_graph (the AR model, scoring and
KV-cache decode graphs), onnx_export (writing the two files), runtime (onnxruntime sessions and
generation), parity (onnxruntime vs the dequantized torch model). onnx and onnxruntime are the
optional extra `golf[onnx]`; this package imports them only when used.
"""

from __future__ import annotations

import importlib

from golf.errors import GolfError


def require_onnx() -> None:
    """Fail with one clear line when the optional ONNX packages are missing."""
    for module in ("onnx", "onnxruntime"):
        try:
            importlib.import_module(module)
        except ImportError:
            raise GolfError(f"this needs {module}, which is not installed: pip install 'golf[onnx]'") from None
