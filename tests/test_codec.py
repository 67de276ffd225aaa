"""The OSC codec (bridge/osc/codec.py) byte by byte: each refusal's kind and exact text (the client sees it
in /ldm3d/error), padding at every address length, bundle bounds, and the type each value is sent as."""

from __future__ import annotations

import struct

import pytest

from bridge.osc.codec import (
    MAX_BUNDLE_DEPTH,
    MalformedPacket,
    Message,
    decode_message,
    decode_packet,
    encode_bundle,
    encode_message,
)

HEADER = b"#bundle\x00" + struct.pack(">Q", 1)
UNSUPPORTED = "; send int (i/h), float (f/d), string (s), blob (b) or true/false/nil"


def _element(data: bytes) -> bytes:
    return struct.pack(">i", len(data)) + data


@pytest.mark.parametrize(
    ("packet", "kind", "text"),
    [
        (b"", "empty", "empty datagram"),
        (b"abcd", "not_osc", "an OSC message must start with an address beginning with '/'"),
        (b"/abcde", "misaligned", "an OSC packet's size is a multiple of 4, this one is 6 bytes"),
        (b"/abc", "unterminated", "the address is not terminated"),
        (b"/a\x00\x00,iii", "unterminated", "the type tag string is not terminated"),
        (b"/a\x00\x00xi\x00\x00", "bad_type_tag", "the type tag string must start with ','"),
        (b"/a\x00\x00,xq\x00", "bad_type_tag", "unsupported OSC argument type 'qx'" + UNSUPPORTED),
        (b"/a\x00\x00,\xc3\xa9\x00", "bad_type_tag", "unsupported OSC argument type '\ufffd'" + UNSUPPORTED),
        (
            encode_message("/a", 1) + b"\x00\x00\x00\x07",
            "bad_message",
            "not a valid OSC message: sizes or padding do not add up",
        ),
        (b"#bundle\x00\x00\x00\x00\x00", "bad_bundle", "the bundle is shorter than its header"),
        (HEADER + b"\x00\x00", "bad_bundle", "a bundle element size is cut off"),
        (HEADER + struct.pack(">i", 3) + b"/a\x00", "bad_bundle", "bundle element size 3 is invalid"),
        (HEADER + struct.pack(">i", -4), "bad_bundle", "bundle element size -4 is invalid"),
        (HEADER + struct.pack(">i", 0), "bad_bundle", "bundle element size 0 is invalid"),
        (HEADER + struct.pack(">i", 8) + b"/a\x00\x00", "bad_bundle", "bundle element size 8 is invalid"),
        (b"/\x00x\x00", "bad_message", "not a valid OSC message: sizes or padding do not add up"),
    ],
)
def test_each_refusal_has_its_kind_and_exact_text(packet: bytes, kind: str, text: str) -> None:
    with pytest.raises(MalformedPacket) as caught:
        decode_packet(packet)
    assert (caught.value.kind, str(caught.value)) == (kind, text)


def test_a_message_python_osc_cannot_parse_is_a_bad_message() -> None:
    with pytest.raises(MalformedPacket) as caught:
        decode_message(b"/a\x00\x00,i\x00\x00")  # an int announced, none sent
    assert caught.value.kind == "bad_message" and str(caught.value).startswith("not a valid OSC message: ")


@pytest.mark.parametrize("length", range(1, 10))
def test_every_address_length_pads_right_with_and_without_arguments(length: int) -> None:
    """The NUL that ends the address falls at each offset mod 4: type tags start at the next multiple of 4."""
    address = "/" + "a" * (length - 1)
    for args in ((), (7,), ("text", 1.5, True, None, b"\x01\x02")):
        data = encode_message(address, *args)
        assert len(data) % 4 == 0
        assert decode_packet(data) == [Message(address, args)]
    bare = address.encode() + b"\x00" * (4 - len(address) % 4)  # OSC 1.0 without a type tag string
    assert decode_packet(bare) == [Message(address, ())]
    if len(bare) - len(address) > 1:  # padding that is not NUL is refused
        with pytest.raises(MalformedPacket, match="sizes or padding do not add up"):
            decode_packet(bare[:-1] + b"x")


def test_bundles_are_flattened_in_order_up_to_the_nesting_limit() -> None:
    one, two = encode_message("/one", 1), encode_message("/two", "x")
    # OSC 1.0: "#bundle", the timetag 1 ("immediately"), then each element's int32 size and bytes
    assert encode_bundle(one, two) == HEADER + _element(one) + _element(two)
    assert HEADER == b"#bundle\x00" + b"\x00" * 7 + b"\x01"
    assert decode_packet(encode_bundle(one, two)) == [Message("/one", (1,)), Message("/two", ("x",))]
    assert decode_packet(HEADER) == []  # an empty bundle is valid
    nested = one
    for _ in range(MAX_BUNDLE_DEPTH):
        nested = encode_bundle(nested)
    assert decode_packet(nested) == [Message("/one", (1,))]  # MAX_BUNDLE_DEPTH bundles deep: fine
    with pytest.raises(MalformedPacket) as caught:
        decode_packet(encode_bundle(nested))
    assert (caught.value.kind, str(caught.value)) == ("deep_bundle", "bundles nested deeper than 8 are refused")
    exact = HEADER + _element(one)  # an element that ends exactly at the end of the datagram
    assert decode_packet(exact) == [Message("/one", (1,))]


def _tags(data: bytes) -> bytes:
    end = data.index(b"\x00")
    start = (end + 4) & ~3
    return data[start : data.index(b"\x00", start)]


@pytest.mark.parametrize(
    ("value", "tag", "decoded"),
    [
        (True, b",T", True),
        (False, b",F", False),
        (None, b",N", None),
        (2**31 - 1, b",i", 2**31 - 1),
        (-(2**31), b",i", -(2**31)),
        (2**31, b",h", 2**31),
        (-(2**31) - 1, b",h", -(2**31) - 1),
        (1.5, b",f", 1.5),
        (3.4028234663852886e38, b",f", 3.4028234663852886e38),
        (1e39, b",d", 1e39),
        (-1e39, b",d", -1e39),
        (float("nan"), b",f", 0.0),
        (float("inf"), b",f", 0.0),
        ("text", b",s", "text"),
        (b"\x00\x01", b",b", b"\x00\x01"),
    ],
)
def test_each_value_is_sent_as_the_narrowest_type_that_holds_it(value: object, tag: bytes, decoded: object) -> None:
    data = encode_message("/v", value)  # type: ignore[arg-type]
    assert _tags(data) == tag
    assert decode_packet(data) == [Message("/v", (decoded,))]


def test_what_cannot_be_encoded_says_so() -> None:
    with pytest.raises(ValueError, match="not supported"):
        encode_message("/x", object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^cannot encode /x: "):
        encode_message("/x", 2**64)  # beyond int64
