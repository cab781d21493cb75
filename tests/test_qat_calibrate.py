"""QAT fake quantization (straight-through) and GPTQ calibration Hessians."""

from __future__ import annotations

import torch
from torch import nn

from golf.calibrate import collect_hessians
from golf.models import build
from golf.qat import enable_qat
from quant import get_scheme
from quant.schemes import fake_quant_rows
from quant.tied4 import fake_quant_blocks


def test_fake_quant_rounds_forward_and_passes_gradients_straight_through():
    w = torch.randn(4, 16, requires_grad=True)
    out = fake_quant_rows(w, 31)
    scale = w.detach().abs().amax(dim=1, keepdim=True) / 31
    assert torch.allclose(out, torch.round(w.detach() / scale) * scale)
    assert len(torch.unique(torch.round(out.detach() / scale))) <= 63
    (out * torch.arange(16.0)).sum().backward()
    assert torch.equal(w.grad, torch.arange(16.0).expand(4, 16))


def test_enable_qat_marks_intn_layers_and_the_tied_table():
    model = build("ar", {"num_layers": 2, "model_dim": 64, "num_heads": 2, "num_kv_heads": 1})
    # 4 attention matrices per block + the tied embedding; int8 is not covered.
    assert enable_qat(model, "emb=int4g32,attn=int6,mlp=int8", model.checked_roles()) == 9
    fq = {name: m.fake_quant for name, m in model.named_modules() if hasattr(m, "fake_quant")}
    assert fq["blocks.0.attn.c_q"].keywords == {"qmax": 31} and fq["blocks.1.mlp.fc"] is None
    assert fq["tok_emb"].keywords == {"group": 32}
    # The table the model computes with is on the int4 block grid, for lookup and head alike.
    table = model.tok_emb.table().detach()
    scale = table.reshape(-1, 32).abs().amax(dim=1, keepdim=True) / 7
    codes = table.reshape(-1, 32) / scale
    assert torch.allclose(codes, codes.round(), atol=1e-3)
    x = torch.randint(0, 1024, (2, 17))
    assert torch.isfinite(model(x))


def test_each_scheme_brings_its_own_fake_quantizer():
    # QAT asks the scheme, not a list of classes: intN and block int4 round, float passthroughs don't.
    w = torch.randn(4, 64)
    assert torch.equal(get_scheme("int5").fake_quantizer()(w), fake_quant_rows(w, 15))
    assert torch.equal(get_scheme("int4g64").fake_quantizer()(w), fake_quant_blocks(w, 64))
    assert all(get_scheme(s).fake_quantizer() is None for s in ("fp16", "fp32", "int8"))


def test_fake_quant_blocks_is_rows_of_the_block_view():
    w = torch.randn(4, 64)
    assert torch.equal(fake_quant_blocks(w, 32), fake_quant_rows(w.reshape(8, 32), 7).reshape(4, 64))


class TwoLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 5, bias=False)
        self.b = nn.Linear(5, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x))).sum()


def test_hessians_are_the_mean_input_second_moment():
    model = TwoLayer()
    batches = [torch.randn(4, 7, 3) for _ in range(3)]
    hessians, seconds = collect_hessians(model, batches, device=torch.device("cpu"))
    x = torch.cat([b.reshape(-1, 3) for b in batches]).double()
    hidden = torch.relu(model.a(x.float())).double()
    assert set(hessians) == {"a.weight", "b.weight"} and seconds >= 0
    assert torch.allclose(hessians["a.weight"].double(), x.T @ x / x.shape[0], atol=1e-5)
    assert torch.allclose(hessians["b.weight"].double(), hidden.T @ hidden / x.shape[0], atol=1e-5)
    assert not any(m._forward_pre_hooks for m in model.modules())  # hooks removed
