"""Reliability figures for the README: hostile packets, a flood, injected faults, partial reads, and
the HTTP side and the scene library under attack.

    .venv/bin/python bench/reliability.py [--random 2000] [--flood-rate 10000] [--flood-seconds 5]
        [--idle-flood 1100] [--idle-s 10] [--slow-readers 10] [--changes 600] [--nested 1000] [--lock-s 3]
        [--only osc|http]  (the other sizes and bounds: --help)

Runs real bridges on loopback with the built-in tiny model (built on first use).
Prints, each from this run:
1. malformed packets tried, by kind (the seed corpus of tests/corpus.py plus random
   mutations of valid packets), and hangs (no answer to a probe within 2 s) and crashes
   (the bridge's intake or worker gone): both must be 0;
2. a flood from loopback: packets sent, the rate sustained, what the bridge received,
   dropped by policy (rate limits) and what the kernel dropped before the bridge read it;
3. faults injected (engine error, out of memory, a hang past the job timeout, an
   unwritable output folder) and how many the bridge recovered from (the next job succeeded);
4. partial or undecodable files seen by a reader polling latest.json and the textures
   during 50 jobs: must be 0;
5. hostile subscribers and odd values: a dead resolver, reflection, re-subscribe storms;

and against ``serve`` in a subprocess (its log kept, its memory and descriptors read from /proc;
bench/reliability_connections.py, bench/reliability_http.py and bench/reliability_library.py):

6. idle HTTP connections (silent, or half a request line) from one host and from many, under a
   descriptor limit of 1,024: held and refused, a probe's answer, jobs written meanwhile, when the
   held ones are closed, descriptors, log lines; and connections that trickle their header;
7. WebSocket pages that never read while state changes flow: disconnected, resident memory;
8. DNS rebinding (Host and Origin both evil.example:PORT): refused;
9. JSON nested 5,000 deep on both WebSockets: answers, log lines, tracebacks;
10. a scene library held locked by another connection: ping round trips meanwhile, a scene
    rendered meanwhile and when its row is written;
11. a damaged scene library at start-up (a bridge in this process, on the same folder): started,
    moved aside, warned once, scenes adopted.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image

from bench.reliability_connections import idle_flood
from bench.reliability_http import nested_json, rebinding, slow_readers
from bench.reliability_library import damaged_library, locked_library, write_show
from bench.reliability_served import Served
from bridge.notify.addresses import ResolveFailed
from bridge.osc.client import OscClient
from bridge.osc.codec import Arg, MalformedPacket, Message, decode_packet, encode_bundle, encode_message
from bridge.serve.server import Bridge
from bridge.settings import BridgeSettings
from ldm3d_engine import Cancelled, EngineSettings, GenerateRequest, OutOfMemory, load_engine
from tests.corpus import corpus
from tests.served import serve_tiny

READY_OR_ERROR = ["/ldm3d/ready", "/ldm3d/error"]


def start(engine_factory: Any, out: Path, **overrides: Any) -> Bridge:
    values: dict[str, Any] = {
        "model": "tiny",
        "host": "127.0.0.1",
        "port": 0,
        "output": str(out),
        "zeroconf": False,
        "warmup": False,
        "width": 64,
        "height": 64,
    }
    values.update(overrides)
    bridge = Bridge(BridgeSettings(**values), engine_factory)
    bridge.start()
    bridge.pool.ready.wait(120)
    return bridge


def mutations(n: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    bases = [
        encode_message("/ldm3d/generate", "a reef", "seed", 4, "guidance", 7.5),
        encode_message("/ldm3d/size", 1024, 512),
        b"#bundle\x00" + bytes(8) + b"\x00\x00\x00\x0c" + encode_message("/ldm3d/ping"),
    ]
    out = []
    for _ in range(n):
        data = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            if op < 0.5 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif op < 0.75:
                del data[rng.randrange(len(data) + 1) :]
            else:
                data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        out.append(bytes(data))
    return out


def malformed(engine: Any, tmp: Path, random_count: int) -> None:
    print("1. Malformed packets")
    # Replies are limited per sender (200/s); this section measures parsing, so it lifts that limit.
    bridge = start(lambda: engine, tmp / "m", reply_per_s=1e6, reply_burst=10**6)
    kinds: Counter[str] = Counter()
    hangs = 0
    packets = [data for _, data, _ in corpus()] + mutations(random_count)
    with OscClient(*bridge.address) as client:
        client.subscribe_self()  # a confirmed host: every error comes back in full
        for n, data in enumerate(packets):
            try:
                decode_packet(data)
                kinds["valid (acted on)"] += 1
            except MalformedPacket as exc:
                kinds[exc.kind] += 1
            client.send_raw(data)
            client.send("/ldm3d/seed", n)
            try:
                seen = client.wait_for(["/ldm3d/stage"], 2)
                while seen[-1].args != ("seed", n):
                    seen = client.wait_for(["/ldm3d/stage"], 2)
            except TimeoutError:
                hangs += 1
    alive = all(t.is_alive() for t in bridge._threads)
    bridge.stop()
    for kind, count in sorted(kinds.items()):
        print(f"   {kind:22} {count:6}")
    print(f"   tried {len(packets)}: hangs {hangs}, crashes {0 if alive else 1}")


def flood(tmp: Path, rate: int, seconds: float) -> None:
    print(f"\n2. Flood from loopback: {rate} packets/s for {seconds:g} s (generate, garbage, status in turn)")
    proc, port = serve_tiny(tmp / "f", "--queue-size", "4")
    # The probe is another host (127.0.0.2) than the flooder (127.0.0.1): each destination has its own budget.
    with OscClient("127.0.0.1", port, listen_host="127.0.0.2") as probe, OscClient("127.0.0.1", port) as flooder:
        probe.send("/ldm3d/ping")
        probe.wait_for(["/ldm3d/pong"], 120)
        probe.subscribe_self()
        probe.send("/ldm3d/stats")
        before = probe.wait_for(["/ldm3d/stats"], 5)[-1].args
        received_before = dict(zip(before[::2], before[1::2], strict=True)).get("received", 0)
        packets = [
            encode_message("/ldm3d/generate", "flood", "steps", 1, "width", 64, "height", 64),
            b"\xde\xad\xbe\xef" * 8,
            encode_message("/ldm3d/status"),
        ]
        sent, started = 0, time.monotonic()
        pongs = 0
        while (elapsed := time.monotonic() - started) < seconds:
            for _ in range(100):
                flooder.send_raw(packets[sent % 3])
                sent += 1
            if sent % 2000 == 0:
                probe.send("/ldm3d/ping")
            ahead = sent / rate - elapsed
            if ahead > 0:
                time.sleep(ahead)
        duration = time.monotonic() - started
        time.sleep(1.0)
        while (m := probe.receive(0.05)) is not None:
            pongs += m.address == "/ldm3d/pong"
        probe.send("/ldm3d/stats")
        stats = probe.wait_for(["/ldm3d/stats"], 10)[-1].args
    proc.terminate()
    proc.wait(60)
    counts = {str(k): v for k, v in zip(stats[::2], stats[1::2], strict=True)}
    received = _int(counts.get("received", 0)) - _int(received_before) - 1 - sent // 2000
    policy = {
        k: v
        for k, v in counts.items()
        if k in ("error_rate_limited", "replies_suppressed", "error_queue_full") or k.startswith("malformed_")
    }
    print(
        f"   sent {sent} in {duration:.1f} s ({sent / duration:.0f}/s); the bridge read {received} "
        f"({received / duration:.0f}/s); the kernel dropped {max(0, sent - received)} before it read them"
    )
    print("   dropped or refused by policy: " + ", ".join(f"{k} {_int(v)}" for k, v in sorted(policy.items())))
    queue = _int(counts["queue"])
    print(f"   pings answered during the flood: {pongs} of {sent // 2000}; queue at the end: {queue} (max 4)")


def _int(value: Arg) -> int:
    return int(value) if isinstance(value, int | float) else 0


class Faulty:
    def __init__(self, real: Any) -> None:
        # one fault per injected job, each followed by a recovery job ("ok")
        self.real, self.model_id = real, real.model_id
        self.plan = ["error", "ok", "oom", "oom", "ok", "hang", "ok", "ok", "ok"]

    def resolve(self, request: GenerateRequest) -> Any:
        return self.real.resolve(request)

    def free_memory(self) -> None:
        pass

    def generate(self, request: GenerateRequest, on_step: Any = None, cancel: Any = None, previews: Any = None) -> Any:
        action = self.plan.pop(0) if self.plan else "ok"
        if action == "error":
            raise RuntimeError("injected engine error")
        if action == "oom":
            raise OutOfMemory("injected out of memory")
        if action == "hang":
            while not cancel.cancelled:
                time.sleep(0.01)
            raise Cancelled(0, 1)
        return self.real.generate(request, on_step=on_step, cancel=cancel, previews=previews)


def faults(engine: Any, tmp: Path) -> None:
    print("\n3. Faults injected")
    out = tmp / "faults"
    bridge = start(lambda: Faulty(engine), out, job_timeout_s=0.5)
    results = []
    with OscClient(*bridge.address) as client:
        for name in (
            "engine error",
            "out of memory (twice: retry fails)",
            "hang past the job timeout",
            "output folder unwritable",
        ):
            blocked = name.startswith("output")
            if blocked:  # a real filesystem fault: the output folder is replaced by a plain file
                out.rename(out.with_name("faults.moved"))
                out.write_text("not a folder")
            client.send("/ldm3d/generate", "fault", "steps", 1)
            outcome = client.wait_for(READY_OR_ERROR, 30)[-1]
            if blocked:
                out.unlink()
                out.with_name("faults.moved").rename(out)
            client.send("/ldm3d/generate", "recovery", "steps", 1)
            recovered = client.wait_for(READY_OR_ERROR, 30)[-1].address == "/ldm3d/ready"
            results.append((name, str(outcome.args[1]), recovered))
    bridge.stop()
    for name, code, recovered in results:
        print(f"   {name:38} → {code:15} next job {'succeeded' if recovered else 'FAILED'}")
    print(f"   injected {len(results)}, recovered {sum(r for *_, r in results)}")


def partial_reads(engine: Any, tmp: Path) -> None:
    print("\n4. Atomic handoff: a reader polls latest.json and the two textures during 50 jobs")
    bridge = start(lambda: engine, tmp / "atomic", width=256, height=256, client_jobs_per_s=1000.0)
    root, stop = bridge.writer.root, threading.Event()
    reads, partial = [0], [0]

    def reader() -> None:
        while not stop.is_set():
            try:
                latest = json.loads((root / "latest.json").read_text())
                for key in ("rgb", "depth"):
                    with Image.open(latest[key]) as image:
                        image.load()
                reads[0] += 1
            except FileNotFoundError:
                continue
            except (OSError, SyntaxError, ValueError):
                partial[0] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    with OscClient(*bridge.address) as client:
        for _ in range(50):
            client.send("/ldm3d/generate", "x", "steps", 1)
            assert client.wait_for(READY_OR_ERROR, 30)[-1].address == "/ldm3d/ready"
    stop.set()
    thread.join()
    bridge.stop()
    print(f"   complete reads {reads[0]}, partial or undecodable reads {partial[0]}")


class DeadResolver:
    """A resolver stand-in that never answers (a dead DNS server), until released. No real names."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, host: str) -> list[str]:
        self.release.wait(30)
        raise ResolveFailed("no answer")


def _drain(client: OscClient, seconds: float) -> list[Message]:
    seen, deadline = [], time.monotonic() + seconds
    while (message := client.receive(max(0.0, deadline - time.monotonic()))) is not None:
        seen.append(message)
    return seen


def hostile_subscribers(engine: Any, tmp: Path) -> None:
    print("\n5. Hostile subscribers and odd values (clients on 127.0.0.2/3 play other hosts)")
    resolver = DeadResolver()
    bridge = Bridge(
        BridgeSettings(
            model="tiny",
            host="127.0.0.1",
            port=0,
            output=str(tmp / "subs"),
            zeroconf=False,
            warmup=False,
            width=64,
            height=64,
            heartbeat_s=0.1,
            resolve_timeout_s=1.0,
        ),
        lambda: engine,
        resolver=resolver,
    )
    bridge.start()
    bridge.pool.ready.wait(120)
    rows = []
    try:
        with (
            OscClient(*bridge.address, listen_host="127.0.0.2") as attacker,
            OscClient(*bridge.address, listen_host="127.0.0.3") as victim,
        ):
            # unencodable names and a resolver that never answers: intake and jobs go on
            for host in ("ü..b", "büro..pc"):
                attacker.send("/ldm3d/subscribe", 9, host)
            names = [encode_message("/ldm3d/subscribe", 9000 + i, f"dead{i}.example") for i in range(8)]
            attacker.send_raw(encode_bundle(*names))
            t0 = time.monotonic()
            attacker.send("/ldm3d/ping")
            seen = attacker.wait_for(["/ldm3d/pong"], 5)
            ping_ms = (time.monotonic() - t0) * 1000
            t0 = time.monotonic()
            attacker.send("/ldm3d/generate", "still on time", "steps", 1)
            seen += attacker.wait_for(["/ldm3d/ready"], 60)
            job_ok, job_s = seen[-1].address == "/ldm3d/ready", time.monotonic() - t0
            seen += _drain(attacker, 1.5)
            refused = sum(m.args[1] == "bad_arguments" for m in seen if m.address == "/ldm3d/error")
            rows.append(
                f"10 bad subscriber names (2 unencodable, 8 behind a dead resolver): ping answered in "
                f"{ping_ms:.1f} ms, a job in {job_s:.2f} s meanwhile ({'ok' if job_ok else 'FAILED'}); "
                f"{refused} refused with bad_arguments"
            )
            # reflection: spellings of one victim, then a recall: bytes reaching the victim
            spellings = ["127.0.0.3", "127.3", "0x7f000003", "::ffff:127.0.0.3", "2130706435"]
            for spelling in spellings:
                attacker.send("/ldm3d/subscribe", victim.port, spelling)
            _drain(attacker, 0.3)
            attacker.send("/ldm3d/generate", "a world", "steps", 1)
            job = attacker.wait_for(["/ldm3d/ready"], 60)[-1].args[0]
            _drain(victim, 0.2)
            recall = encode_message("/ldm3d/recall", job)
            attacker.send_raw(recall)
            to_victim = sum(len(encode_message(m.address, *m.args)) for m in _drain(victim, 0.5))
            rows.append(
                f"{len(spellings)} spellings of one victim's address, then a {len(recall)}-byte recall: "
                f"{len(bridge.notifier.subscribers)} active subscriptions, {to_victim} bytes reached the victim "
                "(nothing until it confirms)"
            )
            # re-subscribe storm: state messages to the target
            for _ in range(1000):
                victim.send("/ldm3d/subscribe", victim.port)
            states = [m.address for m in _drain(victim, 1.0)].count("/ldm3d/state")
            rows.append(f"1000 re-subscribes: {states} /ldm3d/state sent to the target (1 + heartbeats, was 1002)")
            # self-loop
            attacker.send("/ldm3d/subscribe", bridge.address[1], "127.0.0.1")
            loop = str(attacker.wait_for(["/ldm3d/error"], 2)[-1].args[1])
            rows.append(
                f"subscribing the bridge to itself: refused ({loop}); datagrams it sent itself: "
                f"{bridge.counters.snapshot().get('self_loop_refused', 0)}"
            )
            # odd values that used to be internal errors
            odd: list[tuple[str, tuple[Arg, ...]]] = [
                ("/ldm3d/seed", (1e30,)),
                ("/ldm3d/size", (1e20, 1e20)),
                ("/ldm3d/guidance", (1e300,)),
                ("/ldm3d/recall", ("20261122-031502-123-0007\n",)),
                ("/ldm3d/img2img", ("a" * 300 + ".png", "p")),
            ]
            for address, args in odd:
                attacker.send(address, *args)
            _drain(attacker, 0.5)
    finally:
        resolver.release.set()
        bridge.stop()
    counts = bridge.counters.snapshot()
    rows.append(
        f"{len(odd)} odd values (1e30 seeds, 1e20 sizes, 300-character names…): internal errors "
        f"{counts.get('internal_error', 0)}"
    )
    for row in rows:
        print(f"   {row}")
    print(f"   the bridge: {'failed' if bridge.failed else 'alive'} throughout")


def served_for_http(tmp: Path, args: argparse.Namespace) -> Served:
    """The served bridge of sections 6 to 10, started now (it loads while sections 3 to 5 run)."""
    env = {
        "LDM3D_BRIDGE_HTTP_IDLE_S": str(args.idle_s),
        "LDM3D_BRIDGE_HTTP_HEADER_S": str(args.header_s),
        "LDM3D_BRIDGE_HTTP_MAX_CONNECTIONS": str(args.http_max_connections),
        "LDM3D_BRIDGE_HTTP_CONNECTIONS_PER_HOST": str(args.http_per_host),
        "LDM3D_BRIDGE_HTTP_MAX_UNSENT_BYTES": str(args.max_unsent),
    }
    shows = write_show(tmp / "shows")
    return Served(tmp / "http", "--input-dir", str(shows), log=tmp / "serve.log", nofile=args.nofile, env=env)


def http_side(engine: Any, served: Served, tmp: Path, args: argparse.Namespace) -> None:
    """Sections 6 to 11: the served bridge for 6 to 10, then one in this process on the same folder for 11."""
    try:
        served.wait()
        idle_flood(served, args.idle_flood, args.idle_s, args.trickle, nofile=args.nofile, header_s=args.header_s)
        slow_readers(served, args.slow_readers, args.changes, args.max_unsent)
        rebinding(served)
        nested_json(served, args.nested)
        locked_library(served, tmp / "http", args.lock_s)
    finally:
        alive, status = served.alive(), served.stop()
    print(f"   the bridge of 6 to 10: {'alive' if alive else 'DEAD'} throughout, stopped with status {status}")
    damaged_library(engine, tmp / "http", tmp / "shows")


def main() -> None:
    logging.basicConfig(level=logging.CRITICAL)  # the figures are the output; the bridge's logs are not
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=("osc", "http"), help="sections 1-5 (OSC) or 6-11 (HTTP, library) only")
    parser.add_argument("--random", type=int, default=2000, help="random mutations on top of the corpus")
    parser.add_argument("--flood-rate", type=int, default=10000)
    parser.add_argument("--flood-seconds", type=float, default=5.0)
    parser.add_argument("--idle-flood", type=int, default=1100, help="idle HTTP connections, half from one host")
    parser.add_argument("--idle-s", type=float, default=10.0, help="the bridge's http_idle_s (its default: 60)")
    parser.add_argument("--http-max-connections", type=int, default=512, help="the bridge's (its default)")
    parser.add_argument("--http-per-host", type=int, default=64, help="http_connections_per_host (its default)")
    parser.add_argument("--nofile", type=int, default=1024, help="the bridge's open-file limit, soft and hard")
    parser.add_argument("--trickle", type=int, default=8, help="connections that send a header byte by byte")
    parser.add_argument("--header-s", type=float, default=10.0, help="the bridge's http_header_s (its default: 20)")
    parser.add_argument("--slow-readers", type=int, default=10, help="pages that never read")
    parser.add_argument("--changes", type=int, default=600, help="32 kB state changes sent to every page")
    parser.add_argument("--max-unsent", type=int, default=4 << 20, help="http_max_unsent_bytes (its default)")
    parser.add_argument("--nested", type=int, default=1000, help="nested JSON messages on each WebSocket")
    parser.add_argument("--lock-s", type=float, default=3.0, help="how long the scene library is held locked")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ldm3d-reliability-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # its jobs (and OpenVINO's caches) are GBs
    engine = load_engine(EngineSettings(model="tiny"))
    served = None
    if args.only != "http":
        malformed(engine, tmp, args.random)
        flood(tmp, args.flood_rate, args.flood_seconds)
    if args.only != "osc":
        served = served_for_http(tmp, args)
    try:
        if args.only != "http":
            faults(engine, tmp)
            partial_reads(engine, tmp)
            hostile_subscribers(engine, tmp)
        if served is not None:
            http_side(engine, served, tmp, args)
    finally:
        if served is not None:
            served.stop()


if __name__ == "__main__":
    main()
