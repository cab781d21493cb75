"""Model variants by name.

Every variant is an `nn.Module` built from a small config dataclass and offers the same three
things (see `base.LanguageModel`): `loss`, `score` (per-token nats + an `exact`/`bound` label)
and `generate`. The trainer, the scorer and the packer only ever see this interface, so a new
family plugs in by registering itself here and nothing else changes.

A family that lives outside golf (your own experiment, or a test's toy) is loaded by naming its
module in GOLF_MODEL_PLUGINS (comma-separated importable module names): `train_gpt.py`, `golf score`
and every other command then know it. Such a module is not part of a packed record's train_gpt.py.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Mapping
from typing import Any

import torch

from golf.errors import GolfError
from golf.models.base import LanguageModel

_REGISTRY: dict[str, tuple[type[LanguageModel], type]] = {}


def register(name: str, config_cls: type):
    """Class decorator: make a variant buildable by `name` from a `config_cls` dataclass."""

    def wrap(model_cls: type[LanguageModel]) -> type[LanguageModel]:
        if name in _REGISTRY:
            raise ValueError(f"model variant {name!r} registered twice")
        model_cls.variant = name
        _REGISTRY[name] = (model_cls, config_cls)
        return model_cls

    return wrap


def variant_names() -> list[str]:
    _load_builtin_variants()
    return sorted(_REGISTRY)


def _lookup(name: str) -> tuple[type[LanguageModel], type]:
    _load_builtin_variants()
    if name not in _REGISTRY:
        raise GolfError(f"unknown model variant {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def config_class(name: str) -> type:
    return _lookup(name)[1]


def tiny_config(name: str) -> Any:
    """Variant `name`'s small test config (its class's `tiny_config()`), e.g. for the compile check."""
    return _lookup(name)[0].tiny_config()


def make_config(name: str, values: Mapping[str, Any]) -> Any:
    """Build `name`'s config from a dict (e.g. an artifact manifest); unknown keys are an error."""
    cls = config_class(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise GolfError(f"config for variant {name!r} has unknown fields: {', '.join(unknown)}")
    return _construct(name, cls, values)


def _construct(name: str, cls: type, values: Mapping[str, Any]) -> Any:
    """The config dataclass; its own range checks (in __post_init__) become one-line errors."""
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise GolfError(f"config for variant {name!r}: {e}") from None


def config_from_env(name: str, environ: Mapping[str, str]) -> Any:
    """Read `name`'s config from UPPER_SNAKE environment variables (field `model_dim` ← MODEL_DIM).

    Fields whose variable is unset keep their default, so the official names and defaults of
    train_gpt.py carry over to every variant.
    """
    cls = config_class(name)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        raw = environ.get(field.name.upper())
        if raw is None:
            continue
        kind = type(field.default)
        try:
            values[field.name] = bool(int(raw)) if kind is bool else kind(raw)
        except ValueError:
            raise GolfError(f"{field.name.upper()}={raw!r} is not a valid {kind.__name__}") from None
    return _construct(name, cls, values)


def build(name: str, config: Any) -> LanguageModel:
    """Instantiate variant `name` from its config dataclass or a plain dict of its fields."""
    model_cls, config_cls = _lookup(name)
    if not isinstance(config, config_cls):
        config = make_config(name, config)
    return model_cls(config)


PLUGINS_ENV = "GOLF_MODEL_PLUGINS"


def _load_builtin_variants() -> None:
    # Importing a variant module registers it; done lazily so `golf.models` imports cheaply.
    from golf.models import ar, bits, mdlm  # noqa: F401

    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(module)  # already-imported modules are not re-run
        except ImportError as e:
            raise GolfError(f"{PLUGINS_ENV}: cannot import model family module {module!r} ({e})") from None


def roles_of(name: str, config: Any) -> dict[str, str]:
    """The tensor roles of variant `name` at `config`, from a build on the meta device (no memory)."""
    with torch.device("meta"):
        return build(name, config).checked_roles()


def roles_from_meta(meta: Mapping[str, Any]) -> dict[str, str]:
    """The tensor roles of the model an artifact's manifest meta describes (`{"model": {variant, config}}`)."""
    spec = meta.get("model") if isinstance(meta, Mapping) else None
    if not isinstance(spec, Mapping) or not isinstance(spec.get("variant"), str) \
            or not isinstance(spec.get("config"), Mapping):
        raise GolfError("artifact manifest has no model description (meta.model.variant/config)")
    try:
        return roles_of(spec["variant"], spec["config"])
    except (ValueError, TypeError) as e:
        raise GolfError(f"artifact's model config is not buildable: {e}") from None
