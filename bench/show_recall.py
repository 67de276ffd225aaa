"""Recalling a rendered cue: ``/ldm3d/cue <number>`` in → ``/ldm3d/ready`` out, on loopback,
with a scene library of 1,000 scenes, against ``/ldm3d/ping`` → ``/ldm3d/pong`` in the same run.

    .venv/bin/python bench/show_recall.py [--scenes 1000] [--recalls 500]

A real bridge serves a show of ``--scenes`` cues whose scenes are all in its library (written
by the bridge's own writer, 64×64 textures); the engine is a stand-in that is never asked (a
rendered cue does not touch it). Each recall picks a random cue and waits for its
``/ldm3d/ready`` (the library lookup, the scene's meta.json read, the notification); the target
is p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bridge_latency import InstantEngine, pct, scene
from bridge.osc.client import OscClient
from bridge.output.job_ids import new_job_id
from bridge.output.writer import TextureWriter
from bridge.serve.server import Bridge
from bridge.settings import BridgeSettings
from bridge.show.library import SceneLibrary
from bridge.show.reading import load_show


def write_show(folder: Path, scenes: int) -> Path:
    cues = "".join(
        f'\n[[cue]]\nnumber = "{i}"\nname = "World {i}"\nprompt = "world number {i}"\nseed = {i}\n'
        for i in range(scenes)
    )
    path = folder / "show.toml"
    path.write_text(f'name = "Recall bench"\nfallback = "0"\n{cues}', encoding="utf-8")
    return path


def fill_library(output: Path, show_file: Path, identity: str) -> float:
    """Every cue's scene written and recorded, as a pre-generation would; returns the seconds it took."""
    t0 = time.perf_counter()
    writer = TextureWriter(output)
    writer.prepare()
    library = SceneLibrary(output)
    result = scene(64, 64)
    try:
        for cue in load_show(show_file).cues:
            key = cue.scene_key(identity)
            files = writer.write_scene(new_job_id(), result, {"scene_key": key})
            library.add(key, files.job_id, cue.number)
    finally:
        library.close()
        writer.close()
    return time.perf_counter() - t0


def measure(client: OscClient, address: str, args: list[object], reply: str) -> float:
    t = time.perf_counter()
    client.send(address, *args)  # type: ignore[arg-type]
    client.wait_for([reply], 5)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=1000)
    parser.add_argument("--recalls", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        shows, output = Path(tmp) / "shows", Path(tmp) / "out"
        shows.mkdir()
        show_file = write_show(shows, args.scenes)
        engine = InstantEngine(scene(64, 64))
        filled = fill_library(output, show_file, engine.identity)
        settings = BridgeSettings(
            host="127.0.0.1", port=0, output=str(output), zeroconf=False, http=False, warmup=False,
            input_dirs=(str(shows),), client_jobs_per_s=1e6, client_jobs_burst=10**6, reply_per_s=1e6,
            reply_burst=10**6, heartbeat_s=60.0,
        ).check()  # fmt: skip
        bridge = Bridge(settings, lambda: engine)  # type: ignore[arg-type, return-value]
        bridge.start()
        client = OscClient(*bridge.address)
        try:
            assert bridge.pool.ready.wait(30)
            client.subscribe_self()
            client.send("/ldm3d/show/load", "show.toml")
            client.wait_for(["/ldm3d/ready"], 30)  # the fallback, from the library
            rng = random.Random(0)
            pings = [measure(client, "/ldm3d/ping", [], "/ldm3d/pong") for _ in range(args.recalls)]
            recalls = [
                measure(client, "/ldm3d/cue", [str(rng.randrange(args.scenes))], "/ldm3d/ready")
                for _ in range(args.recalls)
            ]
            asked = engine.calls
        finally:
            client.close()
            bridge.stop()
    ping50, ping99 = pct(pings, 0.5), pct(pings, 0.99)
    rec50, rec99 = pct(recalls, 0.5), pct(recalls, 0.99)
    print(f"Scene library: {args.scenes} scenes written and recorded in {filled:.1f} s")
    print(f"Round trips on loopback, {args.recalls} each (ms)")
    print(f"   /ldm3d/ping → pong           p50 {ping50:7.3f}   p99 {ping99:7.3f}   (the baseline)")
    print(
        f"   /ldm3d/cue → ready (recall)  p50 {rec50:7.3f}   p99 {rec99:7.3f}   "
        f"({rec50 / ping50:.1f}× the baseline at p50; target p99 < 50 ms: {'met' if rec99 < 50 else 'MISSED'})"
    )
    print(f"Engine calls during the recalls: {asked}")


if __name__ == "__main__":
    main()
