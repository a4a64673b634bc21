"""Box ids on the wire and the ZeroMQ topics that address boxes."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from opq.errors import ProtocolError

if TYPE_CHECKING:
    from opq.protocol.messages import Command

MAX_WIRE_BOX_ID: Final = 2**31 - 1
"""Largest box id every message can carry: `Command.box_id` and `Response.box_id` are int32."""

_CANONICAL_DECIMAL = re.compile(r"0|[1-9][0-9]*")


def wire_box_id(box_id: str) -> int:
    """The integer a box id travels as (`"1001"` → 1001).

    opq keeps box ids as strings (the store's key); the wire carries them as uint32/int32. Only the
    canonical decimal form of 0..2³¹−1 is accepted, so that decoding gives back the same string:
    no sign, spaces or leading zeros (`"0007"` would come back as `"7"`).
    """
    if not isinstance(box_id, str) or not _CANONICAL_DECIMAL.fullmatch(box_id):
        raise ProtocolError(
            f"box id {box_id!r} cannot go on the wire: it must be a decimal integer without sign, "
            "spaces or leading zeros"
        )
    number = int(box_id)
    if number > MAX_WIRE_BOX_ID:
        raise ProtocolError(f"box id {box_id!r} cannot go on the wire: it is larger than {MAX_WIRE_BOX_ID}")
    return number


def box_id_from_wire(number: int, message: str) -> str:
    """The box id string of a decoded wire integer; `message` names the message for the error."""
    if not 0 <= number <= MAX_WIRE_BOX_ID:
        raise ProtocolError(f"malformed {message}: box id {number} is outside 0..{MAX_WIRE_BOX_ID}")
    return str(number)


def measurement_topic(box_id: str) -> bytes:
    """Topic frame of a box's measurements: the id zero-padded to 4 digits (`b"0007"`), as OPQ Box v3 sends.

    Ids of more than 4 digits are not cut (`b"12345"`).
    """
    return b"%04d" % wire_box_id(box_id)


def command_topic(box_id: str) -> bytes:
    """Topic frame of the commands for a box: its decimal id (`b"7"`), what an OPQ Box subscribes to.

    ZeroMQ SUB sockets match topics by prefix, so a box subscribed to `b"1"` also receives the commands
    for boxes 10, 100, 1001, ... A box must therefore also check that `Command.box_id` is its own id
    (`command_is_for`); the original box did not, and obeyed other boxes' commands.
    """
    return str(wire_box_id(box_id)).encode("ascii")


def command_is_for(command: Command, box_id: str) -> bool:
    """Whether a received command is addressed to the box `box_id` (not just prefix-matched by topic)."""
    return command.box_id == box_id
