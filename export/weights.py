"""An artifact's tensors, as stored, turned into ONNX initializers and the ops that read them.

Every weight keeps its artifact scheme, so the .onnx file holds the same codes and scales the
artifact holds and dequantizes exactly as `quant` does (every product below is exact in fp32):

- `int4g32`/`int4g64`: the packed nibbles [N, D/g, g/2] uint8 and the fp16 scales [N, D/g] as they
  are. A matrix is read by `com.microsoft.MatMulNBits`; the tied table is read by it (the LM head)
  *and* by `com.microsoft.GatherBlockQuantized` (the lookup), from the same two initializers: the
  only view needed is one Reshape of the scales to [V, D/g, 1] (GBQ wants scales of data's rank).
  Standard ONNX has no uint8-nibble op, so the fallback stores the same nibbles as signed `int4`
  (each byte XOR 0x88: still one copy, same size) for a blocked `DequantizeLinear`.
- `int8`, `int4`…`int7` (per row), `fp8e4m3` (per row): integer or fp8 codes with their scales
  through `DequantizeLinear`. ONNX has no 5-7-bit type, so intN codes are stored one per int8
  byte: the values are exact, the file is larger than the artifact's bit-packed codes.
- `fp16`, `bf16`, `fp32`: the stored dtype, cast to fp32 in the graph.

fp16 scales are cast to fp32 in the graph: the fp32 products then equal the torch dequantization
bit for bit (a fp16 product would round).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from export.onnx_graph import CONTRIB_DOMAIN, FLOAT, Graph
from golf.errors import GolfError
from quant import QTensor, unpack_codes
from quant.intn import unzigzag

_CAST_DTYPES = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16, "fp32": TensorProto.FLOAT}
_TIED4 = ("int4g32", "int4g64")


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().contiguous().numpy()


def _raw(name: str, elem_type: int, shape: tuple[int, ...], data: bytes) -> onnx.TensorProto:
    return helper.make_tensor(name, elem_type, list(shape), data, raw=True)


class Weights:
    """Reads an artifact's quantized tensors into `graph`, each initializer written once.

    `contrib=False` builds the standard-ONNX fallback (no com.microsoft ops).
    """

    def __init__(self, graph: Graph, tensors: Mapping[str, QTensor], *, contrib: bool) -> None:
        self.g = graph
        self.tensors = tensors
        self.contrib = contrib
        self._values: dict[str, str] = {}  # tensor name → fp32 value in the graph
        self._scales: dict[str, str] = {}  # tensor name → fp32 block scales (int4g)
        self.stored_bytes: dict[str, int] = {}  # tensor name → bytes of its initializers
        self.lead = ""  # the [B, T] shape of the activations, set by the graph before any `linear`
        self._out_shapes: dict[int, str] = {}

    def _qt(self, name: str) -> QTensor:
        if name not in self.tensors:
            raise GolfError(f"export: the artifact has no tensor {name!r}")
        return self.tensors[name]

    def _store(self, owner: str, hint: str, tensor: onnx.TensorProto) -> str:
        out = self.g.initializer(hint, tensor)
        self.stored_bytes[owner] = self.stored_bytes.get(owner, 0) + len(tensor.raw_data)
        return out

    def _store_array(self, owner: str, hint: str, arr: np.ndarray) -> str:
        return self._store(owner, hint, onnx.numpy_helper.from_array(np.ascontiguousarray(arr)))

    def _f32_scale(self, owner: str, scale: torch.Tensor) -> str:
        """A stored fp16 (or fp32) scale tensor, as fp32 in the graph."""
        stored = self._store_array(owner, f"{owner}.scale", _np(scale))
        return stored if scale.dtype == torch.float32 else self.g.op("Cast", [stored], to=FLOAT)

    # ------------------------------------------------------------------ dequantized values

    def value(self, name: str) -> str:
        """Tensor `name` as an fp32 value of its original shape (computed once per graph)."""
        if name not in self._values:
            self._values[name] = self._dequantized(name, self._qt(name))
        return self._values[name]

    def _dequantized(self, name: str, qt: QTensor) -> str:
        g, parts, meta = self.g, qt.enc.parts, qt.enc.meta
        shape = tuple(qt.shape)
        if qt.scheme in _CAST_DTYPES:
            data = parts["data"]
            if data.dtype == torch.bfloat16:
                stored = self._store(name, name, _raw(name, TensorProto.BFLOAT16, shape,
                                                      _np(data.view(torch.int16)).tobytes()))
            else:
                stored = self._store_array(name, name, _np(data))
            return stored if qt.scheme == "fp32" else g.op("Cast", [stored], to=FLOAT)
        if qt.scheme == "int8":
            q = self._store_array(name, f"{name}.q", _np(parts["q"]))
            axis = {"axis": 0} if meta.get("granularity") == "row" else {}
            return g.op("DequantizeLinear", [q, self._f32_scale(name, parts["scale"])], **axis)
        if qt.scheme.startswith("int") and "bits" in meta and "layout" in meta:  # intN per row
            rows, cols = int(meta["rows"]), int(meta["cols"])
            codes = unzigzag(unpack_codes(parts["codes"], int(meta["bits"]), str(meta["layout"]), rows * cols))
            q = self._store_array(name, f"{name}.q", _np(codes.to(torch.int8).view(rows, cols)))
            return self._reshaped(g.op("DequantizeLinear", [q, self._f32_scale(name, parts["scale"])], axis=0),
                                  (rows, cols), shape)
        if qt.scheme == "fp8e4m3":
            rows, cols = int(meta["rows"]), int(meta["cols"])
            data = self._store(name, f"{name}.fp8", _raw(f"{name}.fp8", TensorProto.FLOAT8E4M3FN, (rows, cols),
                                                          _np(parts["data"]).tobytes()))
            return self._reshaped(g.op("DequantizeLinear", [data, self._f32_scale(name, parts["scale"])], axis=0),
                                  (rows, cols), shape)
        if qt.scheme in _TIED4:
            return self._int4_blocks_standard(name, qt)
        raise GolfError(f"export: tensor {name!r} uses scheme {qt.scheme!r}, which has no ONNX form here")

    def _reshaped(self, value: str, stored: tuple[int, int], shape: tuple[int, ...]) -> str:
        if tuple(shape) == tuple(stored):
            return value
        return self.g.op("Reshape", [value, self.g.const_i64(list(shape))])

    def _int4_blocks_standard(self, name: str, qt: QTensor) -> str:
        """Standard ONNX: the nibbles as signed int4 (XOR 0x88 turns code+8 into code's two's
        complement), dequantized by a blocked DequantizeLinear along the model dim."""
        rows, cols = qt.shape
        signed = (_np(qt.enc.parts["packed"]) ^ np.uint8(0x88)).tobytes()
        data = self._store(name, f"{name}.int4", _raw(f"{name}.int4", TensorProto.INT4, (rows, cols), signed))
        scale = self._block_scales(name, qt)
        return self.g.op("DequantizeLinear", [data, scale], axis=1, block_size=int(qt.enc.meta["group"]))

    def _block_scales(self, name: str, qt: QTensor) -> str:
        if name not in self._scales:
            self._scales[name] = self._f32_scale(name, qt.enc.parts["scale"])
        return self._scales[name]

    def _packed(self, name: str, qt: QTensor) -> str:
        key = f"{name}#packed"
        if key not in self._values:
            self._values[key] = self._store_array(name, f"{name}.packed", _np(qt.enc.parts["packed"]))
        return self._values[key]

    def _nbits_ready(self, name: str) -> bool:
        return self.contrib and self._qt(name).scheme in _TIED4

    # ------------------------------------------------------------------ ops that read weights

    def linear(self, x: str, name: str, out_features: int) -> str:
        """x [..., K] @ Wᵀ for the [N, K] weight `name`: MatMulNBits on int4 blocks, else a Gemm
        with transB on a 2-D view (ORT's transpose optimizer mishandles MatMul(x, Transpose(DQ(w)))
        for int4/fp8 data in some versions; the Gemm form runs everywhere)."""
        qt = self._qt(name)
        n, k = qt.shape
        if self._nbits_ready(name):
            return self.g.op("MatMulNBits", [x, self._packed(name, qt), self._block_scales(name, qt)],
                             domain=CONTRIB_DOMAIN, K=k, N=n, bits=4, block_size=int(qt.enc.meta["group"]))
        g = self.g
        flat = g.op("Reshape", [x, g.const_i64([-1, k])])
        y = g.op("Gemm", [flat, self.value(name)], transB=1)
        if out_features not in self._out_shapes:
            self._out_shapes[out_features] = g.op("Concat", [self.lead, g.const_i64([out_features])], axis=0)
        return g.op("Reshape", [y, self._out_shapes[out_features]])

    def lookup(self, ids: str, name: str) -> str:
        """Rows of the [V, D] table `name` for int64 ids [B, T] → [B, T, D]."""
        qt = self._qt(name)
        if not self._nbits_ready(name):
            return self.g.op("Gather", [self.value(name), ids], axis=0)
        rows, cols = qt.shape
        group = int(qt.enc.meta["group"])
        blocks = cols // group
        g = self.g
        # The one view of the shared table: GBQ needs scales of the data's rank, [V, D/g, 1].
        scale3 = g.op("Reshape", [self._block_scales(name, qt), g.const_i64([rows, blocks, 1])])
        # `bits` is left out (default 4) so onnxruntime 1.22 loads the model too.
        rows4 = g.op("GatherBlockQuantized", [self._packed(name, qt), ids, scale3], domain=CONTRIB_DOMAIN,
                     block_size=group, gather_axis=0, quantize_axis=2)  # [B, T, D/g, g]
        return g.op("Reshape", [rows4, g.const_i64([0, 0, cols])])


def table_nbytes(qt: QTensor) -> int:
    """Bytes of an int4g table's packed codes plus its fp16 scales, as the artifact stores them."""
    return sum(math.prod(p.shape) * p.element_size() for p in qt.enc.parts.values())
