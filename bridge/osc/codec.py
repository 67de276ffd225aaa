"""OSC 1.0 datagrams ↔ messages. Pure: no sockets, no threads.

python-osc's codec decodes and encodes single messages; bundles are walked
here, because python-osc 1.10.2's bundle parser loops forever on an element
size of -4 and its dispatcher sleeps until a bundle's timetag. We check every
element size, cap nesting, and ignore timetags: every message is handled when
it arrives.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from pythonosc.osc_message import OscMessage, ParseError
from pythonosc.osc_message_builder import BuildError, OscMessageBuilder

#: Largest UDP payload over IPv4.
MAX_DATAGRAM = 65507
MAX_BUNDLE_DEPTH = 8
BUNDLE_HEADER = b"#bundle\x00"
#: Argument types we accept: int32, int64, float32, float64, string, blob, true, false, nil.
ACCEPTED_TAGS = frozenset("ihfdsbTFN")

Arg = int | float | str | bytes | bool | None


class MalformedPacket(ValueError):
    """A datagram that is not valid OSC, or uses what this bridge does not accept.

    ``kind`` is a short stable name for counting (``bad_bundle``, ``bad_type_tag``…)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Message:
    address: str
    args: tuple[Arg, ...] = ()


def _type_tags(data: bytes, end: int) -> str:
    """The type tag string of a message datagram ('' when it has none); ``end``: the address's NUL."""
    start = (end + 4) & ~3
    if start >= len(data):
        return ""
    tag_end = data.find(b"\x00", start)
    if tag_end < 0:
        raise MalformedPacket("unterminated", "the type tag string is not terminated")
    return data[start:tag_end].decode("ascii", errors="replace")


def decode_message(data: bytes) -> Message:
    if not data.startswith(b"/"):
        raise MalformedPacket("not_osc", "an OSC message must start with an address beginning with '/'")
    if len(data) % 4:
        raise MalformedPacket("misaligned", f"an OSC packet's size is a multiple of 4, this one is {len(data)} bytes")
    end = data.find(b"\x00")  # the NUL that ends the address
    if end < 0:
        raise MalformedPacket("unterminated", "the address is not terminated")
    tags = _type_tags(data, end)
    if tags:
        if not tags.startswith(","):
            raise MalformedPacket("bad_type_tag", "the type tag string must start with ','")
        unknown = sorted(set(tags[1:]) - ACCEPTED_TAGS)
        if unknown:
            raise MalformedPacket(
                "bad_type_tag",
                f"unsupported OSC argument type {''.join(unknown)!r}; send int (i/h), float (f/d), string (s), "
                "blob (b) or true/false/nil",
            )
    try:
        parsed = OscMessage(data)
    except (ParseError, UnicodeDecodeError, struct.error, IndexError, ValueError) as exc:
        raise MalformedPacket("bad_message", f"not a valid OSC message: {exc}") from None
    message = Message(parsed.address, tuple(parsed.params))
    # python-osc accepts negative blob sizes, trailing bytes and non-NUL padding;
    # a message is valid when it re-encodes to exactly the bytes received.
    if tags:
        valid = _encode_with_tags(message, tags[1:]) == data
    else:  # OSC 1.0 lets old senders leave the type tag string out: an address alone, NUL-padded
        valid = not message.args and data[end:] == bytes(len(data) - end)
    if not valid:
        raise MalformedPacket("bad_message", "not a valid OSC message: sizes or padding do not add up")
    return message


def _encode_with_tags(message: Message, tags: str) -> bytes:
    builder = OscMessageBuilder(message.address)
    try:
        for tag, arg in zip(tags, message.args, strict=True):
            builder.add_arg(arg, tag)
        return bytes(builder.build().dgram)
    except (BuildError, ValueError, struct.error, TypeError):
        return b""


def _walk(data: bytes, depth: int, out: list[Message]) -> None:
    if data.startswith(BUNDLE_HEADER):
        if depth >= MAX_BUNDLE_DEPTH:
            raise MalformedPacket("deep_bundle", f"bundles nested deeper than {MAX_BUNDLE_DEPTH} are refused")
        index = 16  # header + timetag (ignored: messages run on arrival)
        if len(data) < index:
            raise MalformedPacket("bad_bundle", "the bundle is shorter than its header")
        while index < len(data):
            if index + 4 > len(data):
                raise MalformedPacket("bad_bundle", "a bundle element size is cut off")
            (size,) = struct.unpack_from(">i", data, index)
            index += 4
            if size <= 0 or size % 4 or index + size > len(data):
                raise MalformedPacket("bad_bundle", f"bundle element size {size} is invalid")
            _walk(data[index : index + size], depth + 1, out)
            index += size
    else:
        out.append(decode_message(data))


def decode_packet(data: bytes) -> list[Message]:
    """All messages of one datagram, bundles flattened in order."""
    if not data:
        raise MalformedPacket("empty", "empty datagram")
    out: list[Message] = []
    _walk(data, 0, out)
    return out


_FLOAT32_MAX = 3.4028234663852886e38


def encode_message(address: str, *args: Arg) -> bytes:
    """A message datagram; ints that do not fit in 32 bits are sent as int64, floats beyond
    float32's range as doubles."""
    builder = OscMessageBuilder(address)
    for arg in args:
        if isinstance(arg, bool):
            builder.add_arg(arg, OscMessageBuilder.ARG_TYPE_TRUE if arg else OscMessageBuilder.ARG_TYPE_FALSE)
        elif isinstance(arg, int):
            fits = -(2**31) <= arg < 2**31
            builder.add_arg(arg, OscMessageBuilder.ARG_TYPE_INT if fits else OscMessageBuilder.ARG_TYPE_INT64)
        elif isinstance(arg, float):
            value = arg if math.isfinite(arg) else 0.0
            fits = abs(value) <= _FLOAT32_MAX
            builder.add_arg(value, OscMessageBuilder.ARG_TYPE_FLOAT if fits else OscMessageBuilder.ARG_TYPE_DOUBLE)
        elif arg is None:
            builder.add_arg(None, OscMessageBuilder.ARG_TYPE_NIL)
        else:
            builder.add_arg(arg)
    try:
        return bytes(builder.build().dgram)
    except BuildError as exc:
        raise ValueError(f"cannot encode {address}: {exc}") from exc


def encode_bundle(*messages: bytes) -> bytes:
    """A bundle of encoded messages, timetag "immediately" (1)."""
    out = b"#bundle\x00" + struct.pack(">Q", 1)
    for message in messages:
        out += struct.pack(">i", len(message)) + message
    return out
