"""The engine's libraries on this machine: a report for ``ldm3d-bridge env``, and their chatter
turned down for a show. Kept here so that the bridge never imports torch or the model libraries."""

from __future__ import annotations

import logging


def quiet_model_libraries() -> None:
    """Model libraries' download/shard progress bars and warnings are noise on a show machine."""
    for name in ("diffusers", "transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from diffusers.utils import logging as dlog
        from transformers.utils import logging as tlog
    except ImportError:
        return
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()


def environment_report(devices: bool = False) -> list[tuple[str, str]]:
    """(name, value) rows: the Hugging Face cache, the tiny models' folder, and with ``devices`` the
    devices, torch's CUDA build and GPUs (that part imports torch; the rest never does)."""
    from huggingface_hub import constants

    from .offline.configs import default_tiny_dir

    rows = []
    if devices:
        import torch

        from .backends.devices import available_devices, cpu_bf16

        rows += [
            ("devices", ", ".join(available_devices(openvino=True))),
            ("torch cuda", torch.version.cuda or "none (CPU build)"),
        ]
        rows += [(f"  cuda:{i}", torch.cuda.get_device_name(i)) for i in range(torch.cuda.device_count())]
        rows += [("cpu bfloat16", cpu_bf16() or "not native (no amx_bf16/avx512_bf16): --dtype bfloat16 is refused")]
        rows += _openvino_rows()
    else:
        rows += [("devices", "not looked at: `ldm3d-bridge env --devices` lists them (it loads torch)")]
    rows += [
        ("hf cache", f"{constants.HF_HUB_CACHE} (offline: {constants.HF_HUB_OFFLINE})"),
        ("tiny models", str(default_tiny_dir())),
    ]
    return rows


def _openvino_rows() -> list[tuple[str, str]]:
    """Each OpenVINO device's full name and the dtypes it runs natively (none without the extra)."""
    try:
        import openvino
    except ImportError:
        return [("openvino", "not installed: the [openvino] extra adds openvino:CPU, openvino:GPU, openvino:NPU")]
    from .backends.openvino import device_dtypes

    core = openvino.Core()
    return [
        (
            f"  openvino:{name}",
            f"{core.get_property(name, 'FULL_DEVICE_NAME')} ({', '.join(device_dtypes(core, name))})",
        )
        for name in core.available_devices
    ]
