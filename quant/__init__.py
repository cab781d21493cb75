"""Quantization schemes and the golf artifact container.

Standalone on purpose (torch, numpy and zstandard only; never imports `golf`), so a packed
`train_gpt.py` can embed it. Importing the package registers the built-in schemes and compressors.
"""

from __future__ import annotations

from . import fp8, int8, intn, passthrough, tied4  # noqa: F401  (importing registers the schemes)
from .artifact import (FORMAT_VERSION, MAGIC, Artifact, ArtifactInfo, QuantizedArtifact, RawArtifact, decode_artifact,
                       decode_quantized, encode_artifact, open_raw, read_artifact, read_manifest, read_quantized,
                       recompress_artifact, write_artifact)
from .compress import (AUTO, DEFAULT_COMPRESSOR, Compressor, compress, compressor_names, decompress, get_compressor,
                       register_compressor)
from .errors import ArtifactError, QuantError
from .packing import DEFAULT_LAYOUT, LAYOUTS, pack_codes, unpack_codes
from .rules import GroupRule, QTensor, Rule, check_role_map, dequantize, parse_rule, plan, quantize
from .schemes import Encoded, EncodeOptions, Scheme, get_scheme, register_scheme, scheme_names

__all__ = [
    "AUTO", "DEFAULT_LAYOUT", "EncodeOptions", "GroupRule", "LAYOUTS", "pack_codes", "unpack_codes",
    "Artifact", "ArtifactError", "ArtifactInfo", "Compressor", "DEFAULT_COMPRESSOR", "Encoded", "FORMAT_VERSION",
    "MAGIC", "QTensor", "QuantError", "QuantizedArtifact", "RawArtifact", "Rule", "Scheme", "compress", "compressor_names", "decode_artifact", "decode_quantized",
    "decompress", "dequantize", "encode_artifact", "get_compressor", "get_scheme", "open_raw", "parse_rule", "plan",
    "quantize", "read_artifact", "read_manifest", "read_quantized", "check_role_map", "recompress_artifact", "register_compressor", "register_scheme", "scheme_names",
    "write_artifact",
]
