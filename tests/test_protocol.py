"""The OSC contract's rules as pure functions: codec, parsing, options."""

from __future__ import annotations

import struct

import pytest

from bridge.contract import protocol
from bridge.contract.arguments import as_int
from bridge.errors import BadArguments, UnknownAddress
from bridge.osc.codec import MalformedPacket, Message, decode_packet, encode_message


def msg(address: str, *args: object) -> protocol.Command:
    return protocol.parse(Message(address, tuple(args)))  # type: ignore[arg-type]


def test_generate_with_options_and_floats_for_ints() -> None:
    cmd = msg("/ldm3d/generate", "a forest", "seed", 42.0, "steps", 24.6, "guidance", 7, "seamless", 1)
    assert cmd == protocol.Generate("a forest", {"seed": 42, "steps": 25, "guidance": 7.0, "seamless": True})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "needs a prompt"),
        ((42,), "prompt must be a string"),
        (("p", "steps"), "key/value pairs"),
        (("p", "colour", 3), "unknown option 'colour'"),
        (("p", "steps", "many"), "option 'steps' must be a number"),
        (("p", "steps", float("nan")), "finite"),
        (("p", "negative", 5), "option 'negative' must be a string"),
    ],
)
def test_generate_refusals_say_what_is_allowed(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(BadArguments, match=message):
        msg("/ldm3d/generate", *args)


@pytest.mark.parametrize(("args", "fires"), [((), True), ((1,), True), ((1.0,), True), ((0,), False), ((0.0,), False)])
def test_trigger_fires_on_nonzero_or_nothing_and_ignores_zero(args: tuple[object, ...], fires: bool) -> None:
    assert isinstance(msg("/ldm3d/go", *args), protocol.Go if fires else protocol.Ignored)


def test_stage_setters_round_and_type_check() -> None:
    assert msg("/ldm3d/steps", 30.4) == protocol.SetStage("steps", 30)
    assert msg("/ldm3d/size", 1024.0, 512) == protocol.SetStage("size", (1024, 512))
    with pytest.raises(BadArguments, match="exactly one value"):
        msg("/ldm3d/prompt")
    with pytest.raises(BadArguments, match="width and height"):
        msg("/ldm3d/size", 1024)


def test_job_addresses_check_the_id_and_ports() -> None:
    assert msg("/ldm3d/cancel") == protocol.Cancel(None)
    assert msg("/ldm3d/recall", "20261122-031502-123-0007") == protocol.Recall("20261122-031502-123-0007")
    with pytest.raises(BadArguments, match="not a job id"):
        msg("/ldm3d/recall", "../../etc")
    assert msg("/ldm3d/subscribe", 7000.0) == protocol.Subscribe(7000, None)
    assert msg("/ldm3d/subscribe", 7000, "10.0.0.5") == protocol.Subscribe(7000, "10.0.0.5")
    with pytest.raises(BadArguments, match="out of range"):
        msg("/ldm3d/subscribe", 70000)


def test_unknown_and_unsupported_addresses() -> None:
    with pytest.raises(UnknownAddress, match="known: generate"):
        msg("/ldm3d/explode")
    with pytest.raises(UnknownAddress, match="starts with /ldm3d/"):
        msg("/other/thing")
    with pytest.raises(BadArguments, match="needs an image path and a prompt"):
        msg("/ldm3d/img2img", "in.png")
    assert msg("/ldm3d/img2img", "in.png", "p", "strength", 0.4, "depth", "d.png") == protocol.Img2Img(
        "in.png", "p", {"strength": 0.4, "depth": "d.png"}
    )
    assert msg("/ldm3d/upscale", "20261122-031502-123-0007", "noise_level", 40.0) == protocol.Upscale(
        "20261122-031502-123-0007", {"noise_level": 40}
    )
    with pytest.raises(BadArguments, match="unknown option 'strength'"):
        msg("/ldm3d/upscale", "20261122-031502-123-0007", "strength", 0.5)


def test_codec_round_trip_and_bundles() -> None:
    data = encode_message("/ldm3d/ready", "id", 3_000_000_000, 1.5, True)
    assert decode_packet(data) == [Message("/ldm3d/ready", ("id", 3_000_000_000, 1.5, True))]
    inner = encode_message("/ldm3d/ping")
    bundle = b"#bundle\x00" + struct.pack(">Q", 1) + struct.pack(">i", len(inner)) + inner
    nested = b"#bundle\x00" + struct.pack(">Q", 1) + struct.pack(">i", len(bundle)) + bundle
    assert decode_packet(nested) == [
        Message("/ldm3d/ping"),
    ]


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", "empty"),
        (b"#bundle\x00" + b"\x00" * 8 + struct.pack(">i", -4) + b"\x00" * 8, "bad_bundle"),
        (b"#bundle\x00" + b"\x00" * 8 + struct.pack(">i", 4096), "bad_bundle"),
        (b"/a\x00\x00,c\x00\x00\x00\x00\x00A", "bad_type_tag"),
        (b"/a\x00", "misaligned"),
        (b"hello\x00\x00\x00", "not_osc"),
        (b"/a\x00\x00,s\x00\x00\xff\xfe\x00\x00", "bad_message"),
    ],
)
def test_malformed_packets_are_refused_by_kind(data: bytes, kind: str) -> None:
    with pytest.raises(MalformedPacket) as info:
        decode_packet(data)
    assert info.value.kind == kind


def test_deeply_nested_bundles_are_refused() -> None:
    packet = encode_message("/ldm3d/ping")
    for _ in range(20):
        packet = b"#bundle\x00" + b"\x00" * 8 + struct.pack(">i", len(packet)) + packet
    with pytest.raises(MalformedPacket) as info:
        decode_packet(packet)
    assert info.value.kind == "deep_bundle"


@pytest.mark.parametrize(
    ("value", "shown"),
    [(10**11, "100000000000"), (10**15 - 1, "999999999999999"), (10**15, "1e+15"), (-(10**15), "-1e+15")],
)
def test_an_out_of_range_integer_reads_as_typed_until_it_is_too_long_to_read(value: int, shown: str) -> None:
    with pytest.raises(BadArguments) as caught:
        as_int(value, "seed")
    assert str(caught.value) == f"seed {shown} is out of range; whole numbers here go from -2147483648 to 2147483647"


def test_moderation_tickets_have_one_to_64_characters() -> None:
    approve = "/ldm3d/moderation/approve"
    assert protocol.parse(Message(approve, ("x",))) == protocol.Moderate("approve", "x")
    assert protocol.parse(Message(approve, ("x" * 64,))) == protocol.Moderate("approve", "x" * 64)
    for ticket in ("", "x" * 65):
        with pytest.raises(BadArguments, match=r"^/ldm3d/moderation/approve: a ticket has 1 to 64 characters"):
            protocol.parse(Message(approve, (ticket,)))
    assert protocol.parse(Message("/ldm3d/moderation/list", ())) == protocol.Moderate("list")
    assert protocol.parse(Message("/ldm3d/moderation/list", (0,))) == protocol.Ignored()  # a button's release
