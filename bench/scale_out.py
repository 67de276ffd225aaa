"""Scaling out: jobs per minute and prompt → ready with 1 and 2 workers, in this process and on Ray.

    .venv/bin/python bench/scale_out.py [--size 2048x1024] [--job-s 0.5] [--jobs 8] [--rounds 5]

Every worker holds a GPU stand-in (hardware we lack): a job sleeps ``--job-s`` in 20 steps, as
a GPU works without holding the CPU, and returns a prepared picture-like ``--size`` result. So
what differs between the runs is the bridge's part: queue, dispatch, transfer, writing (the
default ``tiff``), notification. Four runs, one after the other in the same process: this
process ×1 and ×2 (``serve --device cuda:0,cuda:1``), Ray ×1 and ×2 (CPU actors on a local
Ray, ``serve --ray local --ray-workers N``). In each:

* throughput: ``--jobs`` jobs sent at once; jobs per minute from the first send to the last
  ``/ldm3d/ready``, against the ideal (workers × 60 / job_s);
* latency: ``--rounds`` jobs one at a time; prompt → ``/ldm3d/ready`` p50 / p99 (the baseline
  is ``--job-s``: the rest is the bridge's own cost).

Then Ray's cost per job measured alone: an empty actor call (dispatch) and one job through an
actor's generator with a zero-time engine (dispatch, the step stream and the transfer of the
result's arrays); and the writer alone (one job's files, p50), which with the intake bounds how
many GPUs one bridge can feed (printed at the end; docs/performance.md).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bridge_latency import scene
from bridge.contract.engine_api import EngineSlot, LocalSlot
from bridge.osc.client import OscClient
from bridge.output.writer import TextureWriter
from bridge.serve.server import Bridge
from bridge.settings import BridgeSettings
from ldm3d_engine import get_preset
from ldm3d_engine.types import CancelToken, GenerateRequest, ResolvedRequest, RGBDResult
from ldm3d_engine.validation import resolve_text

STEPS = 20
MODEL = "ldm3d-pano"  # its preset checks the requests (2048×1024 is within its sizes); nothing is loaded


class GpuStandIn:
    """A job takes ``job_s`` of sleep in ``STEPS`` steps, then returns a prepared result."""

    model_id = "gpu-stand-in"
    identity = "gpu-stand-in@bench"

    def __init__(self, job_s: float, width: int, height: int) -> None:
        self.job_s = job_s
        self.preset = get_preset(MODEL)
        self.result = scene(width, height)

    def resolve(self, request: GenerateRequest) -> ResolvedRequest:
        return resolve_text(self.preset, request)

    def free_memory(self) -> None:
        pass

    def generate(
        self,
        request: GenerateRequest,
        on_step: Callable[[int, int], None] | None = None,
        cancel: CancelToken | None = None,
        previews: object = None,
    ) -> RGBDResult:
        for step in range(1, STEPS + 1):
            time.sleep(self.job_s / STEPS)
            if on_step is not None:
                on_step(step, STEPS)
        return self.result


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(slots: list[EngineSlot], args: argparse.Namespace, out: Path) -> dict[str, float]:
    width, height = args.size
    settings = BridgeSettings(
        model=MODEL, host="127.0.0.1", port=0, output=str(out), zeroconf=False, http=False, warmup=False,
        queue_size=max(16, args.jobs), keep_jobs=1000, width=width, height=height,
    ).check()  # fmt: skip
    bridge = Bridge(settings, slots=slots)
    bridge.start()
    client = OscClient(*bridge.address)
    try:
        deadline = time.monotonic() + 120
        while bridge.pool.alive < len(slots) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bridge.pool.alive == len(slots), [w.state for w in bridge.pool.workers]
        job = ("steps", STEPS, "width", width, "height", height, "sampling", "live")
        started = time.perf_counter()
        for n in range(args.jobs):
            client.send("/ldm3d/generate", f"throughput {n}", *job)
        done = 0
        while done < args.jobs:
            message = client.wait_for(["/ldm3d/ready", "/ldm3d/error"], 60)[-1]
            assert message.address == "/ldm3d/ready", message
            done += 1
        per_minute = args.jobs / (time.perf_counter() - started) * 60
        latencies = []
        for n in range(args.rounds):
            sent = time.perf_counter()
            client.send("/ldm3d/generate", f"latency {n}", *job)
            message = client.wait_for(["/ldm3d/ready", "/ldm3d/error"], 60)[-1]
            assert message.address == "/ldm3d/ready", message
            latencies.append(time.perf_counter() - sent)
        return {"per_minute": per_minute, "p50": pct(latencies, 0.5), "p99": pct(latencies, 0.99)}
    finally:
        client.close()
        bridge.stop()


def ray_costs(ray: Any, args: argparse.Namespace, rounds: int = 20) -> dict[str, float]:
    """An empty call to an actor, and one job through the actor's generator with a zero-time engine."""
    from ldm3d_engine.host import EngineHost

    width, height = args.size
    actor = (
        ray.remote(EngineHost)
        .options(num_cpus=1, max_concurrency=4)
        .remote(functools.partial(GpuStandIn, 0.0, width, height))
    )
    ray.get(actor.ping.remote())
    dispatch, job = [], []
    request = GenerateRequest("cost", steps=STEPS, width=width, height=height)
    for n in range(rounds):
        t0 = time.perf_counter()
        ray.get(actor.ping.remote())
        dispatch.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        events = [ray.get(ref) for ref in actor.run.remote(f"k{n}", "engine", "generate", request)]
        assert events[-1][0] == "result" and events[-1][1].rgb.shape == (height, width, 3)
        job.append(time.perf_counter() - t0)
    ray.kill(actor)
    return {"dispatch": statistics.median(dispatch), "job": statistics.median(job)}


def writer_cost(args: argparse.Namespace, out: Path, rounds: int = 10) -> float:
    width, height = args.size
    result = scene(width, height)
    writer = TextureWriter(out, keep=1000)
    writer.prepare()
    try:
        times = []
        for n in range(rounds):
            t0 = time.perf_counter()
            writer.write(f"20261123-000000-000-{n:04d}", result)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)
    finally:
        writer.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="2048x1024", type=lambda s: tuple(int(v) for v in s.split("x")))
    p.add_argument("--job-s", type=float, default=0.5, help="a job's time on the stand-in GPU")
    p.add_argument("--jobs", type=int, default=8, help="jobs sent at once for the throughput")
    p.add_argument("--rounds", type=int, default=5, help="jobs one at a time for the latency")
    args = p.parse_args()
    width, height = args.size
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # this bench's Ray stays on loopback
    import ray

    from bridge.workers.ray_workers import RayCluster, ray_slots

    build = functools.partial(GpuStandIn, args.job_s, width, height)
    print(f"GPU stand-in: {args.job_s:g} s per job in {STEPS} steps, {width}×{height} results; "
          f"{args.jobs} jobs at once, then {args.rounds} one at a time")  # fmt: skip
    print(f"{'workers':<22}{'jobs/min':>10}{'ideal':>8}{'of ideal':>10}{'p50 s':>9}{'p99 s':>9}{'bridge p50':>12}")
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            cluster = RayCluster("local")  # finds this Ray
            runs: list[tuple[str, Callable[[], list[EngineSlot]]]] = [
                ("this process ×1", lambda: [LocalSlot(build, where="gpu:0")]),
                ("this process ×2", lambda: [LocalSlot(build, where=f"gpu:{n}") for n in (0, 1)]),
                ("Ray ×1", lambda: [*ray_slots(cluster, 1, build, None, 0.0, 120.0)]),
                ("Ray ×2", lambda: [*ray_slots(cluster, 2, build, None, 0.0, 120.0)]),
            ]
            for n, (name, slots) in enumerate(runs):
                f = figures[name] = run(slots(), args, Path(tmp) / f"run{n}")
                workers = 2 if name.endswith("2") else 1
                ideal = workers * 60 / args.job_s
                print(f"{name:<22}{f['per_minute']:>10.1f}{ideal:>8.0f}{f['per_minute'] / ideal:>10.0%}"
                      f"{f['p50']:>9.3f}{f['p99']:>9.3f}{(f['p50'] - args.job_s) * 1000:>9.0f} ms")  # fmt: skip
            costs = ray_costs(ray, args)
        finally:
            ray.shutdown()
        write_s = writer_cost(args, Path(tmp) / "writer")
    local, remote = figures["this process ×1"], figures["Ray ×1"]
    print(f"\nRay per job: {(remote['p50'] - local['p50']) * 1000:+.0f} ms prompt → ready (Ray ×1 − this process ×1, "
          f"p50); alone: dispatch {costs['dispatch'] * 1000:.1f} ms, a zero-time job through the actor with its "
          f"{width}×{height} result {costs['job'] * 1000:.0f} ms")  # fmt: skip
    print(f"the writer: {write_s * 1000:.0f} ms per {width}×{height} job (p50) → at most {1 / write_s:.0f} jobs/s "
          f"through one writer")  # fmt: skip
    for gpu_s in (2.0, 8.0):
        print(f"  with {gpu_s:g} s GPU jobs one bridge feeds about {gpu_s / write_s:.0f} GPUs before its writer is "
              f"the limit")  # fmt: skip


if __name__ == "__main__":
    main()
