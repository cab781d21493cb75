"""The settings of a SentencePiece model that decide what its pieces decode to, read from the model.

The Python binding exposes piece strings and four piece types, but not the normalizer flags that
decide whether a leading "▁" is dropped, nor which pieces are user-defined. Those live in the
model's protobuf. We read the few fields we need with a small wire-format reader rather than
depend on `protobuf` (sentencepiece's own `sentencepiece_model_pb2` needs it, and a packed
train_gpt.py must run where only torch, numpy and sentencepiece are installed). Field numbers
and defaults are those of sentencepiece_model.proto.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import sentencepiece as spm

from golf.errors import GolfError

MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}
PIECE_TYPES = {1: "normal", 6: "byte", 4: "user_defined", 3: "control", 2: "unknown", 5: "unused"}  # proto enum

# field numbers in sentencepiece_model.proto
_MODEL_PIECES, _MODEL_TRAINER, _MODEL_NORMALIZER = 1, 2, 3
_PIECE_TYPE = 3
_TRAINER_MODEL_TYPE, _TRAINER_SPLIT_WS, _TRAINER_WS_SUFFIX, _TRAINER_BYTE_FALLBACK = 3, 22, 24, 35
_NORM_NAME, _NORM_DUMMY_PREFIX, _NORM_REMOVE_WS, _NORM_ESCAPE_WS = 1, 3, 4, 5
_WIRE_SIZES = {1: 8, 5: 4}  # fixed64, fixed32


@dataclass(frozen=True)
class ModelSpec:
    model_type: str  # unigram, bpe, word or char
    normalizer: str  # normalizer_spec.name: nmt_nfkc, identity, nfkc, ...
    add_dummy_prefix: bool  # the normalizer puts a "▁" before the text (after it, with the suffix option)
    remove_extra_whitespaces: bool  # leading/trailing whitespace stripped, runs collapsed
    escape_whitespaces: bool  # spaces become "▁" before encoding
    split_by_whitespace: bool  # training option: no piece crosses a word boundary
    treat_whitespace_as_suffix: bool  # "▁" ends pieces instead of starting them
    byte_fallback: bool  # characters outside the alphabet become <0xNN> byte pieces, not <unk>
    piece_types: tuple[str, ...]  # by id: normal, unknown, control, user_defined, unused or byte

    @property
    def decoder_drops_leading_space(self) -> bool:
        """SentencePiece's decoder drops one "▁" from the first piece of a text under these flags."""
        return self.add_dummy_prefix or self.remove_extra_whitespaces


def read_spec(sp: spm.SentencePieceProcessor) -> ModelSpec:
    """The decoding settings and piece types of a loaded model."""
    model = _message(sp.serialized_model_proto())
    trainer, norm = _submessage(model, _MODEL_TRAINER), _submessage(model, _MODEL_NORMALIZER)
    types = tuple(PIECE_TYPES.get(int(_last(_message(p), _PIECE_TYPE, 1)), "unknown")
                  for p in model.get(_MODEL_PIECES, []))
    if len(types) != sp.vocab_size():
        raise GolfError(f"tokenizer model lists {len(types)} pieces but sentencepiece loaded {sp.vocab_size()}")
    return ModelSpec(
        model_type=MODEL_TYPES.get(int(_last(trainer, _TRAINER_MODEL_TYPE, 1)), "unknown"),
        normalizer=bytes(_last(norm, _NORM_NAME, b"")).decode("utf-8", "replace") or "unnamed",
        add_dummy_prefix=bool(_last(norm, _NORM_DUMMY_PREFIX, 1)),
        remove_extra_whitespaces=bool(_last(norm, _NORM_REMOVE_WS, 1)),
        escape_whitespaces=bool(_last(norm, _NORM_ESCAPE_WS, 1)),
        split_by_whitespace=bool(_last(trainer, _TRAINER_SPLIT_WS, 1)),
        treat_whitespace_as_suffix=bool(_last(trainer, _TRAINER_WS_SUFFIX, 0)),
        byte_fallback=bool(_last(trainer, _TRAINER_BYTE_FALLBACK, 0)),
        piece_types=types)


def _last(message: dict[int, list[int | bytes]], number: int, default: int | bytes) -> int | bytes:
    """A scalar field's value: protobuf keeps the last occurrence; absent means the proto default."""
    values = message.get(number)
    return values[-1] if values else default


def _submessage(message: dict[int, list[int | bytes]], number: int) -> dict[int, list[int | bytes]]:
    """A message field: protobuf merges repeated occurrences, as parsing their concatenation does."""
    return _message(b"".join(message.get(number, [])))


def _message(buf: bytes) -> dict[int, list[int | bytes]]:
    """Field number -> values (varints as int, length-delimited fields as bytes) of one message."""
    fields: dict[int, list[int | bytes]] = {}
    for number, value in _fields(buf):
        fields.setdefault(number, []).append(value)
    return fields


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        wire = key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire in _WIRE_SIZES:
            value, pos = buf[pos:pos + _WIRE_SIZES[wire]], pos + _WIRE_SIZES[wire]
        else:
            raise GolfError(f"tokenizer model protobuf has unsupported wire type {wire}")
        if pos > len(buf):
            raise GolfError("tokenizer model protobuf is truncated")
        yield key >> 3, value


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise GolfError("tokenizer model protobuf is truncated")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
