"""Hostile and odd OSC datagrams, by kind: the seed corpus of the hardening tests and of
bench/reliability.py. Each entry is (kind, datagram, whether the bridge should act on it)."""

from __future__ import annotations

import struct

from bridge.osc.codec import encode_message

PING = encode_message("/ldm3d/ping")


def bundle(*elements: bytes, timetag: int = 1, sizes: list[int] | None = None) -> bytes:
    out = b"#bundle\x00" + struct.pack(">Q", timetag)
    for i, element in enumerate(elements):
        size = len(element) if sizes is None else sizes[i]
        out += struct.pack(">i", size) + element
    return out


def nested(depth: int, inner: bytes = PING) -> bytes:
    packet = inner
    for _ in range(depth):
        packet = bundle(packet)
    return packet


def _pad(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def corpus() -> list[tuple[str, bytes, bool]]:
    blob_msg = b"/ldm3d/ping\x00,b\x00\x00"
    return [
        ("empty datagram", b"", False),
        ("bundle element size -4", bundle(PING, sizes=[-4]), False),
        ("bundle element size 0", bundle(PING, sizes=[0]), False),
        ("bundle element size huge", bundle(PING, sizes=[0x7FFFFFFF]), False),
        ("bundle element size odd", bundle(PING, sizes=[5]), False),
        ("bundle header only", b"#bundle\x00", False),
        ("bundles nested 400 deep", nested(400), False),
        ("bundles nested 8 deep (allowed)", nested(8), True),
        ("invalid UTF-8 string", _pad(b"/ldm3d/prompt\x00") + b",s\x00\x00" + _pad(b"\xff\xfe\xfa\x00"), False),
        ("invalid UTF-8 address", _pad(b"/ldm3d/\xff\xfe\x00"), False),
        ("unterminated address", b"/ldm3d/pingxxxxx", False),
        ("unterminated string", _pad(b"/ldm3d/prompt\x00") + b",s\x00\x00" + b"abcd", False),
        ("unterminated type tags", _pad(b"/ldm3d/prompt\x00") + b",sss", False),
        ("blob longer than datagram", blob_msg + struct.pack(">i", 4096) + b"abcd", False),
        ("blob negative size", blob_msg + struct.pack(">i", -8) + b"abcd", False),
        ("type tag c", _pad(b"/ldm3d/seed\x00") + b",c\x00\x00" + b"\x00\x00\x00A", False),
        ("type tag S", _pad(b"/ldm3d/prompt\x00") + b",S\x00\x00" + _pad(b"sym\x00"), False),
        ("type tag I", _pad(b"/ldm3d/go\x00") + b",I\x00\x00", False),
        ("unknown type tag", _pad(b"/ldm3d/go\x00") + b",q\x00\x00" + b"\x00" * 4, False),
        ("no comma in type tags", _pad(b"/ldm3d/go\x00") + b"ii\x00\x00" + b"\x00" * 8, False),
        ("not OSC at all", b"GET / HTTP/1.1\r\n\r\n", False),
        ("misaligned", b"/ldm3d/ping\x00,", False),
        ("8 KiB message", encode_message("/ldm3d/negative", "x" * 8180), True),
        ("64 KiB message", encode_message("/ldm3d/negative", "x" * 65000), True),
        (
            "65504-byte message",
            _pad(b"/ldm3d/status\x00") + b",b\x00\x00" + struct.pack(">i", 65504 - 24) + b"\x01" * (65504 - 24),
            True,
        ),
        (
            "65507-byte datagram (not a multiple of 4)",
            encode_message("/ldm3d/negative", "y" * 65480) + b"\x00" * 3,
            False,
        ),
        ("trailing garbage", PING + b"\x01\x02\x03\x04", False),
        ("65507 bytes of garbage", b"\xab" * 65507, False),
        ("far-future timetag", bundle(PING, timetag=0xFFFFFFFF_00000000), True),
        ("past timetag", bundle(PING, timetag=2), True),
    ]
