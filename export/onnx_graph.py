"""A small ONNX graph builder: nodes, initializers and constants by name, with fixed versions.

onnx's helpers default to the newest IR version and opset (IR 14 / opset 28 in onnx 1.23), which
no released onnxruntime loads, so the model is always stamped with the versions below: IR 10 and
opset 21 (blocked DequantizeLinear, int4/fp8 tensors) plus `com.microsoft` 1 for the contrib ops,
loadable from onnxruntime 1.22 on (the first with uint8 GatherBlockQuantized).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 10
OPSET = 21
CONTRIB_DOMAIN = "com.microsoft"
CONTRIB_OPSET = 1
FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64


class Graph:
    """Accumulates nodes and initializers; every `op` call returns its output name(s)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._used: set[str] = set()
        self._consts: dict[tuple, str] = {}
        self.uses_contrib = False

    def fresh(self, hint: str) -> str:
        """A name not used before, derived from `hint`."""
        name, k = hint, 1
        while name in self._used:
            name, k = f"{hint}_{k}", k + 1
        self._used.add(name)
        return name

    def op(self, op_type: str, inputs: Sequence[str], *, name: str | None = None, outputs: int = 1,
           domain: str = "", **attrs) -> str | list[str]:
        base = self.fresh(name or op_type.lower())
        outs = [base] + [self.fresh(f"{base}_out{i}") for i in range(1, outputs)]
        # Node names are optional in ONNX and would only repeat the output names in the file.
        node = helper.make_node(op_type, list(inputs), outs, domain=domain or None, **attrs)
        self.nodes.append(node)
        if domain == CONTRIB_DOMAIN:
            self.uses_contrib = True
        return outs[0] if outputs == 1 else outs

    def initializer(self, name: str, tensor: onnx.TensorProto) -> str:
        tensor.name = self.fresh(name)
        self.initializers.append(tensor)
        return tensor.name

    def array(self, name: str, value: np.ndarray) -> str:
        """An initializer holding `value` (stored as raw little-endian bytes)."""
        return self.initializer(name, numpy_helper.from_array(np.ascontiguousarray(value)))

    def const_i64(self, values: Sequence[int] | int) -> str:
        """A shared int64 constant (shapes, axes, indices); a scalar for a bare int."""
        key = ("i64", values if isinstance(values, int) else tuple(values))
        if key not in self._consts:
            arr = np.array(values, dtype=np.int64)
            self._consts[key] = self.array("const_i64", arr)
        return self._consts[key]

    def const_f32(self, value: float) -> str:
        key = ("f32", float(value))
        if key not in self._consts:
            self._consts[key] = self.array("const_f32", np.array(value, dtype=np.float32))
        return self._consts[key]

    def add_input(self, name: str, elem_type: int, shape: Sequence[int | str]) -> str:
        self._used.add(name)
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, list(shape)))
        return name

    def add_output(self, value: str, name: str, elem_type: int, shape: Sequence[int | str]) -> None:
        """Expose `value` as graph output `name` (through an Identity when the names differ)."""
        if value != name:
            self._used.add(name)
            self.nodes.append(helper.make_node("Identity", [value], [name]))
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, list(shape)))

    def model(self, metadata: dict[str, str]) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        opsets = [helper.make_opsetid("", OPSET)]
        if self.uses_contrib:
            opsets.append(helper.make_opsetid(CONTRIB_DOMAIN, CONTRIB_OPSET))
        model = helper.make_model(graph, opset_imports=opsets, producer_name="golf")
        model.ir_version = IR_VERSION
        helper.set_model_props(model, metadata)
        return model
