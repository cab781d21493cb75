"""Rules: which scheme each tensor of a state dict gets, and whole-state-dict (de)quantization.

A rule string is parsed once into a `Rule` that answers `scheme_for(name, tensor, role)` and the
encode options for it. The role of every tensor (`emb`, `head`, `attn`, `mlp`, `control`, `other`, or
a model family's own, e.g. `bits`) comes from the model (`LanguageModel.tensor_roles()`): quant never
guesses it from a name. Three kinds of string:

- presets: `int8` (the official routing, bit-exact with the baseline), `fp32`/`fp16`/`bf16`
  (every float tensor in one dtype: the unquantized reference);
- a bare scheme name (`int6`, `fp8`, ...): that scheme for every matrix, the group defaults below
  for the rest (options may follow: `int6,gptq=1`);
- the group grammar, comma-separated `key=value`:
  `emb=int4g32,attn=int6,mlp=int6,other=int8,small=fp16[,head=..][,control=fp32][,layout=planes][,gptq=1]`;
  an intN scheme may carry a step of K row root-mean-squares, `int6s12.85` (see `intn`).

Groups, first match wins: non-float tensors are stored `raw`; role `control` (gains, mixes, skip
weights; default fp32); `small` = other float tensors with fewer than 2 dims (default fp16); then
the tensor's role: `emb` = the token embedding (a tied model's head too, stored once); `head` = an
untied LM head; `attn` / `mlp` = matrices inside attention / MLP blocks; `other` = every other
matrix (default int8). `emb`, `head`, `attn` and `mlp` default to `other`; so does a family's own
role unless the rule names it (`bits=int8`). A rule naming a group no tensor has is refused. Unlike the
`int8` preset, the grammar quantizes every matrix, however small: at golf sizes even a 128-wide
K projection is worth 2x. `layout` is how intN codes are packed (see `packing`); `gptq=1` makes
intN tensors use GPTQ with calibration Hessians passed to `quantize`.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor

from .errors import QuantError
from .packing import DEFAULT_LAYOUT, check_layout
from .schemes import DEFAULTS, Encoded, EncodeOptions, get_scheme, scheme_names

# Float tensors up to this many elements are stored as floats, not int8 (INT8_KEEP_FLOAT_MAX_NUMEL).
KEEP_FLOAT_MAX_NUMEL = 65_536


class Rule(ABC):
    """A parsed rule; `spec` is its canonical string, recorded in the artifact manifest."""

    spec: str
    gptq: bool = False  # whether intN tensors want calibration Hessians (GPTQ)

    @abstractmethod
    def scheme_for(self, name: str, t: Tensor, role: str) -> str:
        """The registered scheme name for tensor `name`, whose model role is `role`."""

    def check_roles(self, roles: Mapping[str, str]) -> None:
        """Refuse a rule that names a group nothing in the model belongs to (a typo, say)."""

    def options_for(self, name: str, t: Tensor, role: str, hessians: Mapping[str, Tensor] | None) -> EncodeOptions:
        """Encode options for tensor `name` of role `role` (the presets use the defaults)."""
        return DEFAULTS

    def encoding_for(self, name: str, t: Tensor, role: str) -> str:
        """The scheme as the rule spells it (with a K·σ step: `int6s12`): what its compressed size depends on."""
        return self.scheme_for(name, t, role)

    def __str__(self) -> str:
        return self.spec


class OfficialInt8Rule(Rule):
    """The baseline routing: non-float raw, small floats fp32 (control) or fp16, the rest int8."""

    spec = "int8"

    def scheme_for(self, name: str, t: Tensor, role: str) -> str:
        if not t.is_floating_point():
            return "raw"
        if t.numel() <= KEEP_FLOAT_MAX_NUMEL:
            return "fp32" if role == "control" else "fp16"
        return "int8"


class UniformFloatRule(Rule):
    """Every float tensor in one float dtype, the rest raw: the unquantized reference artifact."""

    def __init__(self, spec: str):
        self.spec = spec

    def scheme_for(self, name: str, t: Tensor, role: str) -> str:
        return self.spec if t.is_floating_point() else "raw"


class GroupRule(Rule):
    """The group grammar; `spec` is canonical (every key spelled out) so equal rules compare equal."""

    GROUPS = ("emb", "head", "attn", "mlp", "other", "small", "control")
    OPTIONS = ("layout", "gptq")
    ALIASES = {"fp8": "fp8e4m3"}

    def __init__(self, groups: Mapping[str, str], layout: str = DEFAULT_LAYOUT, gptq: bool = False):
        other = groups.get("other", "int8")
        defaults = {"emb": other, "head": other, "attn": other, "mlp": other, "other": other,
                    "small": "fp16", "control": "fp32"}
        spelled_groups = {g: self.ALIASES.get(v, v) for g, v in {**defaults, **groups}.items()}
        self.sigmas = {g: k for g, v in spelled_groups.items() if (k := sigma_of(g, v)) is not None}
        self.groups = {g: split_sigma(v)[0] for g, v in spelled_groups.items()}
        for group, scheme in self.groups.items():
            if not group.isidentifier() or group in self.OPTIONS:
                raise QuantError(f"rule group {group!r} is not a role name")
            get_scheme(scheme)  # unknown scheme names fail here, at parse time
            if scheme == "raw":
                raise QuantError(f"group {group!r}: 'raw' is only for non-float tensors")
        self.layout = check_layout(layout)
        self.gptq = gptq
        # Canonical: the standard groups in a fixed order, then any family roles sorted, then options.
        extra = sorted(set(self.groups) - set(self.GROUPS))
        spelled = ",".join(f"{g}={self.spelling(g)}" for g in (*self.GROUPS, *extra))
        self.spec = f"{spelled},layout={layout},gptq={int(gptq)}"

    @classmethod
    def parse(cls, text: str) -> GroupRule:
        groups: dict[str, str] = {}
        options = {"layout": DEFAULT_LAYOUT, "gptq": "0"}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = (x.strip() for x in item.partition("="))
            if not sep and is_scheme(cls.ALIASES.get(key, key)):
                key, value = "other", key  # a bare scheme: every matrix ("int6,gptq=1")
            elif not sep or not value:
                raise QuantError(f"rule item {item!r} is not key=value or a scheme name")
            if key in options:
                options[key] = value
            else:  # a standard group or a family's own role; check_roles refuses one the model lacks
                groups[key] = value
        if options["gptq"] not in ("0", "1"):
            raise QuantError(f"gptq must be 0 or 1, got {options['gptq']!r}")
        return cls(groups, options["layout"], options["gptq"] == "1")

    def spelling(self, group: str) -> str:
        if group not in self.sigmas:
            return self.groups[group]
        k = self.sigmas[group]
        short = f"{k:g}"  # 13 rather than 13.0, unless that would change K
        return f"{self.groups[group]}s{short if float(short) == k else repr(k)}"

    def group_of(self, t: Tensor, role: str) -> str:
        if role == "control":
            return "control"
        if t.ndim < 2:
            return "small"
        return role if role in self.groups else "other"

    def scheme_for(self, name: str, t: Tensor, role: str) -> str:
        return self.groups[self.group_of(t, role)] if t.is_floating_point() else "raw"

    def check_roles(self, roles: Mapping[str, str]) -> None:
        unknown = sorted(set(self.groups) - set(self.GROUPS) - set(roles.values()))
        if unknown:
            raise QuantError(f"rule names group(s) {', '.join(unknown)} but the model's tensor roles are "
                             f"{', '.join(sorted(set(roles.values())))} (standard groups: {', '.join(self.GROUPS)})")

    def options_for(self, name: str, t: Tensor, role: str, hessians: Mapping[str, Tensor] | None) -> EncodeOptions:
        hessian = hessians.get(name) if self.gptq and hessians is not None else None
        return EncodeOptions(layout=self.layout, hessian=hessian, clip_sigmas=self.sigmas.get(self.group_of(t, role)))

    def encoding_for(self, name: str, t: Tensor, role: str) -> str:
        return self.spelling(self.group_of(t, role)) if t.is_floating_point() else "raw"


# The K of a K·σ step and its range: below 1 the clip cuts most of every row; past ~64 even int7
# codes collapse to a handful of values around zero.
_SIGMA = re.compile(r"(int[4-7])s(\d+(?:\.\d+)?)")
MIN_CLIP_SIGMAS, MAX_CLIP_SIGMAS = 1.0, 64.0


def split_sigma(spelled: str) -> tuple[str, float | None]:
    """('int6', 12.85) for `int6s12.85`; (spelled, None) for any other scheme name."""
    match = _SIGMA.fullmatch(spelled)
    return (spelled, None) if match is None else (match[1], float(match[2]))


def sigma_of(group: str, value: str) -> float | None:
    """K of a group's `intNsK` value (checked), None for a plain scheme name."""
    k = split_sigma(value)[1]
    if k is not None and not MIN_CLIP_SIGMAS <= k <= MAX_CLIP_SIGMAS:
        raise QuantError(f"group {group!r}: a step of {value.partition('s')[2][:20]} row RMS is outside "
                         f"[{MIN_CLIP_SIGMAS:g}, {MAX_CLIP_SIGMAS:g}]")
    return k


def is_scheme(text: str) -> bool:
    """A registered scheme's name, or an intN with a K·σ step (`int6s12`)."""
    return text in scheme_names() or _SIGMA.fullmatch(text) is not None


_PRESETS = {"int8": OfficialInt8Rule, "fp32": lambda: UniformFloatRule("fp32"),
            "fp16": lambda: UniformFloatRule("fp16"), "bf16": lambda: UniformFloatRule("bf16")}


def parse_rule(rule: str | Rule) -> Rule:
    if isinstance(rule, Rule):
        return rule
    text = rule.strip()
    if text in _PRESETS:
        return _PRESETS[text]()
    if "=" in text or "," in text or is_scheme(GroupRule.ALIASES.get(text, text)):
        return GroupRule.parse(text)
    raise QuantError(f"unknown quantization rule {rule!r}: use a preset ({', '.join(sorted(_PRESETS))}), "
                     "a scheme name, or groups like 'emb=int4g32,attn=int6,mlp=int6,other=int8'")


class QTensor(NamedTuple):
    """One quantized tensor: the scheme that made it, its parts, and what to decode it back to."""

    scheme: str
    enc: Encoded
    shape: tuple[int, ...]
    dtype: torch.dtype


def check_role_map(state_dict: Mapping[str, Tensor], roles: Mapping[str, str]) -> None:
    """Every tensor has a role and every role names a tensor: a gap is a model bug, named here."""
    missing = sorted(set(state_dict) - set(roles))
    extra = sorted(set(roles) - set(state_dict))
    if missing or extra:
        what = [f"no role for tensor(s) {', '.join(missing)}"] if missing else []
        what += [f"roles name tensor(s) that do not exist: {', '.join(extra)}"] if extra else []
        raise QuantError("tensor roles do not match the state dict: " + "; ".join(what))


def plan(state_dict: Mapping[str, Tensor], rule: str | Rule, *, roles: Mapping[str, str],
         spelled: bool = False) -> dict[str, str]:
    """Tensor name → scheme name, without quantizing anything. `roles`: tensor name → model role.
    `spelled`: the scheme as the rule spells it, with its K·σ step (`int6s12`; what sizes depend on)."""
    parsed = parse_rule(rule)
    check_role_map(state_dict, roles)
    parsed.check_roles(roles)
    name_of = parsed.encoding_for if spelled else parsed.scheme_for
    return {name: name_of(name, t, roles[name]) for name, t in state_dict.items()}


def quantize(state_dict: Mapping[str, Tensor], rule: str | Rule, *, roles: Mapping[str, str],
             hessians: Mapping[str, Tensor] | None = None) -> dict[str, QTensor]:
    """Encode every tensor by `rule` and its role. `hessians` (weight name → [in, in] input second
    moment) are needed by rules with gptq=1; tensors without one (e.g. the embedding) fall back to
    rounding."""
    parsed = parse_rule(rule)
    if parsed.gptq and not hessians:
        raise QuantError(f"rule {parsed.spec!r} asks for GPTQ but no calibration Hessians were given")
    out: dict[str, QTensor] = {}
    for name, scheme in plan(state_dict, parsed, roles=roles).items():
        # On the CPU, like the official, so the quantile (and thus every byte) is device-independent.
        t = state_dict[name].detach().to("cpu").contiguous()
        try:
            enc = get_scheme(scheme).encode(t, parsed.options_for(name, t, roles[name], hessians))
        except QuantError as e:
            raise QuantError(f"{name}: {e}") from None
        out[name] = QTensor(scheme, enc, tuple(t.shape), t.dtype)
    return out


def dequantize(quantized: Mapping[str, QTensor]) -> dict[str, Tensor]:
    """The state dict back, every tensor in its original shape and dtype."""
    out: dict[str, Tensor] = {}
    for name, qt in quantized.items():
        try:
            out[name] = get_scheme(qt.scheme).decode(qt.enc, qt.shape, qt.dtype)
        except QuantError as e:
            raise QuantError(f"{name}: {e}") from None
    return out
