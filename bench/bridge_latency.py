"""Bridge latency and texture-writing cost, measured on loopback in one run.

    .venv/bin/python bench/bridge_latency.py [--rounds 500]

Prints:
1. OSC round trips on loopback (p50/p99): /ldm3d/ping → /ldm3d/pong and
   /ldm3d/generate → /ldm3d/accepted, against a raw UDP echo baseline measured
   in the same run (what the OS and Python cost anyway).
2. The delay from the last file rename of a job to its /ldm3d/ready reaching a client.
3. The texture handoff of a 1024×512 and a 2048×1024 job in every format (RGB + 16-bit
   depth + meta.json + latest.json, fsync and rename included) against Pillow's default
   PNG in the same run, and the cost to read the files back (Pillow as the reader).

The engine is a stand-in that returns prepared arrays instantly: this measures
the bridge, not the model (bench/engine_speed.py is for that).
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.osc.client import OscClient
from bridge.output.formats import DEFAULT_FORMAT
from bridge.output.job_ids import new_job_id
from bridge.output.writer import JobFiles, TextureWriter
from bridge.serve.server import Bridge
from bridge.settings import FORMAT_NAMES, BridgeSettings
from ldm3d_engine.types import GenerateRequest, ResolvedRequest, RGBDResult, Timings


def scene(width: int, height: int) -> RGBDResult:
    """A picture-like RGBD (smooth gradients, texture, mild noise), which PNG compresses like a real one."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = x / width, y / height
    texture = 0.15 * np.sin(40 * u) * np.sin(25 * v) + 0.03 * rng.standard_normal((height, width)).astype(np.float32)
    rgb = np.stack([0.3 + 0.5 * v + texture, 0.4 + 0.3 * np.sin(6.28 * u) + texture, 0.8 - 0.5 * v + texture], -1)
    depth = np.clip(0.5 + 0.3 * np.cos(6.28 * u) * (1 - v) + 0.5 * texture, 0, 1).astype(np.float32)
    req = ResolvedRequest("bench", "", 1, 20, 7.0, width, height, "dpm", True)
    return RGBDResult(
        rgb=np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8),
        depth=np.rint(depth * 65535).astype(np.uint16),
        depth_float=depth,
        request=req,
        prompt_used="bench",
        prompt_truncated=False,
        negative_truncated=False,
        model_id="bench",
        preset="bench",
        device="cpu",
        dtype="float32",
        depth_layout="rgbd4",
        timings=Timings(0, 0, 0),
    )


class InstantEngine:
    """Returns a prepared result at once: the bridge's own costs are what is measured."""

    model_id = "bench"
    identity = "bench@instant"

    def __init__(self, result: RGBDResult) -> None:
        self.result = result
        self.calls = 0

    def resolve(self, request: GenerateRequest) -> ResolvedRequest:
        return self.result.request

    def free_memory(self) -> None:
        pass

    def generate(
        self, request: GenerateRequest, on_step: object = None, cancel: object = None, previews: object = None
    ) -> RGBDResult:
        self.calls += 1
        return self.result


class StampingWriter(TextureWriter):
    """Records when the last rename of each job (latest.json) has happened."""

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self.renamed: dict[str, float] = {}

    def write(
        self, job_id: str, result: RGBDResult, meta_extra: dict[str, object] | None = None, fmt: str | None = None
    ) -> JobFiles:
        files = super().write(job_id, result, meta_extra, fmt)
        self.renamed[job_id] = time.perf_counter()
        return files


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000


def udp_echo_baseline(rounds: int) -> list[float]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    stop = threading.Event()

    def echo() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                data, addr = server.recvfrom(65536)
            except TimeoutError:
                continue
            server.sendto(data, addr)

    thread = threading.Thread(target=echo)
    thread.start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        client.sendto(b"/ldm3d/ping\x00,\x00\x00\x00", server.getsockname())
        client.recvfrom(65536)
        times.append(time.perf_counter() - t)
    stop.set()
    thread.join()
    client.close()
    server.close()
    return times


def round_trips(client: OscClient, address: str, args: tuple[object, ...], reply: str, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        client.send(address, *args)  # type: ignore[arg-type]
        client.wait_for([reply], 5)
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=20)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="ldm3d-bench-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)  # its jobs (and OpenVINO's caches) are GBs
    small = scene(64, 32)

    print(f"1. OSC round trips on loopback, {args.rounds} each (ms)")
    base = udp_echo_baseline(args.rounds)
    print(f"   raw UDP echo (baseline)        p50 {pct(base, 0.5):6.3f}  p99 {pct(base, 0.99):6.3f}")
    settings = BridgeSettings(
        model="bench",
        host="127.0.0.1",
        port=0,
        output=str(out / "a"),
        zeroconf=False,
        warmup=False,
        queue_mode="latest-wins",
        # This measures the bridge, not its limiter: one client sends every request of the run.
        client_jobs_per_s=1e6,
        client_jobs_burst=10**6,
        reply_per_s=1e6,
        reply_burst=10**6,
    )
    writer = StampingWriter(out / "a", keep=50)
    bridge = Bridge(settings, lambda: InstantEngine(small), writer=writer)
    bridge.start()
    bridge.pool.ready.wait(10)
    with OscClient(*bridge.address) as client:
        client.subscribe_self()  # a confirmed host: replies are not bounded by request size
        ping = round_trips(client, "/ldm3d/ping", (), "/ldm3d/pong", args.rounds)
        print(
            f"   /ldm3d/ping → pong             p50 {pct(ping, 0.5):6.3f}  p99 {pct(ping, 0.99):6.3f}"
            f"   ({statistics.median(ping) / statistics.median(base):.1f}× the baseline)"
        )
        accepted = round_trips(client, "/ldm3d/generate", ("bench",), "/ldm3d/accepted", args.rounds)
        print(
            f"   /ldm3d/generate → accepted     p50 {pct(accepted, 0.5):6.3f}  p99 {pct(accepted, 0.99):6.3f}"
            f"   ({statistics.median(accepted) / statistics.median(base):.1f}× the baseline)"
        )
        time.sleep(0.5)
        while client.receive(0.2) is not None:
            pass

        print(f"\n2. Last rename → /ldm3d/ready received, {args.jobs} jobs (ms)")
        delays = []
        for _ in range(args.jobs):
            client.send("/ldm3d/generate", "bench")
            ready = client.wait_for(["/ldm3d/ready"], 10)[-1]
            delays.append(time.perf_counter() - writer.renamed[str(ready.args[0])])
        print(f"   p50 {pct(delays, 0.5):6.3f}  p99 {pct(delays, 0.99):6.3f}  max {max(delays) * 1000:6.3f}")
    bridge.stop()

    print("\n3. Texture handoff per job, every format, median of 5 (ms)")
    print("   baseline: Pillow's default PNG settings, rgb.png + depth.png saved one after the other, no fsync")
    print("   ours: each format through the bridge's writer: images encoded in parallel, + meta.json +")
    print("   latest.json, all fsynced, the job folder renamed into place; read: Pillow decoding rgb + depth")
    from PIL import Image

    for width, height in ((1024, 512), (2048, 1024)):
        result = scene(width, height)
        plain = out / f"plain{width}"
        plain.mkdir()
        base_t, base_size = [], []
        for _ in range(5):
            t = time.perf_counter()
            Image.fromarray(result.rgb, "RGB").save(plain / "rgb.png")
            Image.fromarray(result.depth).save(plain / "depth.png")
            base_t.append(time.perf_counter() - t)
            base_size.append((plain / "rgb.png").stat().st_size + (plain / "depth.png").stat().st_size)
        bt, bs = statistics.median(base_t), statistics.median(base_size)
        br = read_back(plain / "rgb.png", plain / "depth.png")
        print(f"   {width}×{height}")
        print(f"     {'Pillow default PNG':20} write {bt * 1000:7.1f}   read {br * 1000:6.1f}   {bs / 1e6:5.2f} MB")
        for fmt in FORMAT_NAMES:
            try:
                w = TextureWriter(out / f"{fmt}{width}", fmt=fmt)
            except ValueError as exc:  # png-fast without its extra
                print(f"     {fmt:20} skipped: {exc}")
                continue
            w.prepare()
            our_t, our_size = [], []
            for _ in range(5):
                t = time.perf_counter()
                files = w.write(new_job_id(), result)
                our_t.append(time.perf_counter() - t)
                our_size.append(files.rgb.stat().st_size + files.depth.stat().st_size)
            w.close()
            ot, os_ = statistics.median(our_t), statistics.median(our_size)
            rt = read_back(files.rgb, files.depth)
            default = " (default)" if fmt == DEFAULT_FORMAT else ""
            print(
                f"     {fmt + default:20} write {ot * 1000:7.1f}   read {rt * 1000:6.1f}   {os_ / 1e6:5.2f} MB"
                f"   → writes {bt / ot:5.1f}× faster, reads {br / rt:4.1f}× faster, size {os_ / bs:.2f}×"
            )


def read_back(rgb: Path, depth: Path) -> float:
    """Median time to decode both files with Pillow (a stand-in for TouchDesigner's reader)."""
    import numpy as np
    from PIL import Image

    times = []
    for _ in range(5):
        t = time.perf_counter()
        for path in (rgb, depth):
            with Image.open(path) as image:
                np.asarray(image)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


if __name__ == "__main__":
    main()
