"""Shared encoding checks: parse protobuf bytes and vet values, raising ProtocolError with a clear message."""

from __future__ import annotations

import numbers
import operator
from typing import TypeVar

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage
from google.protobuf.unknown_fields import UnknownFieldSet

from opq.errors import ProtocolError

_Proto = TypeVar("_Proto", bound=ProtoMessage)


def parse_proto(msg: _Proto, data: bytes, name: str) -> _Proto:
    """Parse `data` into `msg`, translating every failure into a ProtocolError naming the message."""
    try:
        msg.ParseFromString(data)
    except DecodeError as err:
        raise ProtocolError(f"malformed {name}: {err}") from err
    except TypeError as err:
        raise ProtocolError(f"malformed {name}: expected bytes, got {type(data).__name__}") from err
    # A known field number with the wrong wire type lands among the unknown fields: a peer never
    # retypes a field, so this is another message type (or garbage), not a newer protocol version.
    fields = msg.DESCRIPTOR.fields_by_number
    unknowns = UnknownFieldSet(msg)
    for index in range(len(unknowns)):
        number: int = unknowns[index].field_number
        if number in fields:
            raise ProtocolError(
                f"malformed {name}: field {number} ({fields[number].name}) has the wrong wire type "
                "(another message type?)"
            )
    return msg


def uint_value(name: str, value: int, bits: int) -> int:
    """`value` checked to be an integer that fits an unsigned `bits`-bit field."""
    if isinstance(value, bool):
        raise ProtocolError(f"{name} must be an integer, not a bool")
    try:
        number = operator.index(value)
    except TypeError as err:
        raise ProtocolError(f"{name} must be an integer, not {type(value).__name__}") from err
    if not 0 <= number < 2**bits:
        raise ProtocolError(f"{name} {number} is outside 0..{2**bits - 1} (uint{bits})")
    return number


def real_value(name: str, value: float) -> float:
    """`value` checked to be a real number (float fields round it to their width, out of range to ±inf)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ProtocolError(f"{name} must be a number, not {type(value).__name__}")
    return float(value)


def text_value(name: str, value: str) -> str:
    """`value` checked to be a string protobuf can encode (UTF-8, no lone surrogates)."""
    if not isinstance(value, str):
        raise ProtocolError(f"{name} must be a string, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ProtocolError(f"{name} {value!r} is not valid UTF-8 text") from err
    return value
