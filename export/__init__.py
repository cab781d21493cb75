"""ONNX export of golf models (not implemented yet: it arrives with its own issue)."""
