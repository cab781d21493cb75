"""Every existing quantization rule writes the same bytes as before tensor roles existed.

The digests below were taken from the artifacts of this fixed tiny AR model (weights from integer
arithmetic, no RNG) with the code as it was before `tensor_roles()` replaced the name guesses
(commit fdd0b0f), compressor `none` so no compression library's version can move them. A change
to routing, packing or the manifest shows up here as a digest mismatch.
"""

from __future__ import annotations

import hashlib

import pytest
import torch

import quant
from golf.models import build

RULES = ["int8", "fp32", "fp16", "bf16", "int4", "int5", "int6", "int7", "fp8", "fp8e4m3",
         "emb=int4g32,attn=int6,mlp=int5", "emb=int4g64,other=int8", "emb=int8,attn=int4,mlp=int4,gptq=1",
         "int6,layout=bits", "int5,layout=bytes", "int4,layout=planes", "other=int6,small=fp32,control=fp16",
         "emb=fp16,head=int8,attn=fp8,mlp=int7"]

DIGESTS = {
    "tied|int8":
        "c8371f1f9b075bb2d38edb7b04db72ebb6cd60ce4c2532fcf7d373808cce6a52",
    "tied|fp32":
        "646bce21d587204fccac67720f9688505435aed191254ee9205f6a7e91a5d81d",
    "tied|fp16":
        "b09cd5ab872e025ea59f42f73b454463db7fda34e76d7bd3e93f986835e760f8",
    "tied|bf16":
        "85c5eb6ac7aefcaa48fc712a31148314076db96d90c79edf0c449b5766aced80",
    "tied|int4":
        "a7064d1dfd6760e166244861c488589584a3ed160da01712a97b4263b40d5c57",
    "tied|int5":
        "97785c1932f1442d3060d907fd6494af5a19feab39ba5de5ddd7cd13e102d644",
    "tied|int6":
        "c30ccbdfa58ad1419f6931ae4d6da71fe4f271bf06d557f250895ed5fed0df93",
    "tied|int7":
        "b3cebea0fb455a486c3aca0826b3a4b3adf2df43c7262e34dfdc3e2f43a0f8ee",
    "tied|fp8":
        "b692b023445da2653bf56a91319679d75e6b105dad12648075f8bc3a7d3c7d74",
    "tied|fp8e4m3":
        "b692b023445da2653bf56a91319679d75e6b105dad12648075f8bc3a7d3c7d74",
    "tied|emb=int4g32,attn=int6,mlp=int5":
        "41f3b99ef9832bd8459239714ca1af69e6a35f17ec667908d4219a9629a7fb1b",
    "tied|emb=int4g64,other=int8":
        "5fb1ef55ccbddf55d0bbb835ec0401555c921b7a2e675f1678926ecc7f06e1a0",
    "tied|emb=int8,attn=int4,mlp=int4,gptq=1":
        "9e047803e21b5697bff8a795fba5ae8b2cef5ea912d027a5626911674af8fc1a",
    "tied|int6,layout=bits":
        "e7cf9c2a346d8b20cf4f437d3f2449d9310047627959489055d018badc55deb2",
    "tied|int5,layout=bytes":
        "369aa520fb30aec660698c251195a1163c0813db664b1fa972683f8653c730bc",
    "tied|int4,layout=planes":
        "a7064d1dfd6760e166244861c488589584a3ed160da01712a97b4263b40d5c57",
    "tied|other=int6,small=fp32,control=fp16":
        "bfdb3a9296463d933454d919553a576ec5f82bd69f80bef9856df97d92d082e5",
    "tied|emb=fp16,head=int8,attn=fp8,mlp=int7":
        "9be8506d6df69615a83d9df1655b49e70381552a341e3c35c3b02d60fc6d3212",
    "untied|int8":
        "6e9b63846076eb6b461603ff8c8a5c25db9074251dafd85fd6fae828e1e4db5f",
    "untied|fp32":
        "191f540dbce79555b82152a60a8d1e060036e427d9de115ab1a70677ff47f7a6",
    "untied|fp16":
        "3730cdc3a73e808b2699a539b938c38f1e45502a498c09c11987f31ce5d8a3df",
    "untied|bf16":
        "7d40fbec1a9d385e4cb3475db5339895af222a6d701a4f663f8ab8d2d1949c9e",
    "untied|int4":
        "eae57f594e0c1603f4f8fce92139479c06c26d6c12a2a727510e3b9af294bc9a",
    "untied|int5":
        "8474d359e535e210012af1cb7ebf10d8f1def85ce59d2f61ae8a47018ff12a43",
    "untied|int6":
        "7c71e626bf3ec0999707e41cfe94ce8765f8f7440d1b6ea5212f7f48da43f389",
    "untied|int7":
        "cfd3c8ae79bad8526bb753abb675744d5c8020f101ec1bc6f522c2e4abb8b0cf",
    "untied|fp8":
        "e5e50f782f8bb1e0501f2014b6b7f375ce0175b32cf6012e641b54e27cd8c0b2",
    "untied|fp8e4m3":
        "e5e50f782f8bb1e0501f2014b6b7f375ce0175b32cf6012e641b54e27cd8c0b2",
    "untied|emb=int4g32,attn=int6,mlp=int5":
        "e2b942bda99e0f3866c959d3a2bd44a6e3b223ae85f45af208c06ac31e10d7af",
    "untied|emb=int4g64,other=int8":
        "3e7451d48c2788507358167c34be69a7309f00e4b5e51d65496766cf1b02adf9",
    "untied|emb=int8,attn=int4,mlp=int4,gptq=1":
        "9f95c5b93e91f5f5913450667d61a8d3bbb1b921e77743c83b82e0a22aa0dea1",
    "untied|int6,layout=bits":
        "4fe9fe192856132d93fa77ce88865a6344f7b8c908a2b5829f2bbaf13a93c57a",
    "untied|int5,layout=bytes":
        "fed18cfa700b9f791dfe60439788cfbf1e76b2479eea09b3a15dee5d53a55732",
    "untied|int4,layout=planes":
        "eae57f594e0c1603f4f8fce92139479c06c26d6c12a2a727510e3b9af294bc9a",
    "untied|other=int6,small=fp32,control=fp16":
        "712d348346c7d80d935c738838cece7e1cc4d05174766d89bf93bdc2fb3c837f",
    "untied|emb=fp16,head=int8,attn=fp8,mlp=int7":
        "8428cb5d6f1671de9b9a6c305a2299b48923dfd1dd1d61019ee43cd7f9c9c70b",
}


def fixed_model(tied: bool) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Weights of a 3-layer AR model (vocab 1100, so the int8 preset quantizes the embedding)."""
    model = build("ar", dict(vocab_size=1100, num_layers=3, model_dim=64, num_heads=4, num_kv_heads=2,
                             mlp_mult=2, tie_embeddings=tied))
    out = {}
    for k, (name, t) in enumerate(sorted(model.state_dict().items())):
        i = torch.arange(t.numel(), dtype=torch.int64)
        v = ((i * 7919 + k * 104729) % 2003 - 1001).to(torch.float32) / 1001.0 * 0.05
        v[(i * 31 + k) % 97 == 0] *= 6.0  # a few outliers, like trained weights
        out[name] = v.reshape(t.shape)
    return out, model.checked_roles()


def hessians(sd: dict[str, torch.Tensor], roles: dict[str, str]) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in sd.items():
        if roles[name] in ("attn", "mlp") and t.ndim == 2:
            i = torch.arange(t.shape[1], dtype=torch.float32)
            out[name] = torch.diag(1.0 + (i % 5)) + 0.25
    return out


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_every_rule_writes_the_pinned_bytes(tied):
    sd, roles = fixed_model(tied)
    mismatched = []
    for rule in RULES:
        data = quant.encode_artifact(sd, rule=rule, roles=roles, meta={"fixture": "digest"}, compressor="none",
                                     hessians=hessians(sd, roles) if "gptq=1" in rule else None)
        key = f"{'tied' if tied else 'untied'}|{rule}"
        if hashlib.sha256(data).hexdigest() != DIGESTS[key]:
            mismatched.append(key)
    assert not mismatched, f"artifact bytes changed for {mismatched}"
