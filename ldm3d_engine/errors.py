"""Errors raised by :mod:`ldm3d_engine`.

Every error the engine raises on purpose derives from :class:`EngineError`::

    EngineError
    ├── InvalidRequest        a request field is out of range or unknown
    │                         (size, steps, guidance, scheduler, seed)
    ├── UnknownModel          no such preset, or a folder that is not a
    │                         diffusers LDM3D layout
    ├── ModelNotAvailable     the model is not in the local cache and the
    │                         engine may not download (offline)
    ├── DeviceNotAvailable    the requested device (or dtype on it) is absent
    ├── BackendFailed         a backend could not prepare a model part (OpenVINO
    │                         conversion or compilation), named in the message
    ├── OutOfMemory           the device ran out of memory during a job
    ├── UnsafeContent         the image safety checker flagged the picture
                              (it is not returned)
    └── Cancelled             the job was cancelled between two steps

Messages name the offending value and say what is allowed, so they can be
shown to an operator as they are.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class InvalidRequest(EngineError, ValueError):
    """A request field is out of range or unknown."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class UnknownModel(EngineError):
    """No preset of that name, and no folder in diffusers layout at that path."""


class ModelNotAvailable(EngineError):
    """The model's weights are not on this machine and may not be fetched."""

    def __init__(self, model_id: str, cache_dir: str, message: str) -> None:
        super().__init__(message)
        self.model_id = model_id
        self.cache_dir = cache_dir


class DeviceNotAvailable(EngineError):
    """The requested device or dtype is not present on this machine."""


class BackendFailed(EngineError):
    """A backend could not prepare a model part (the part is named in the message)."""


class OutOfMemory(EngineError):
    """The device ran out of memory while running a job."""


class UnsafeContent(EngineError):
    """The image safety checker flagged the picture; the picture is dropped, never returned."""


class Cancelled(EngineError):
    """The job was cancelled; ``step`` steps of ``total`` had run."""

    def __init__(self, step: int, total: int) -> None:
        super().__init__(f"cancelled after step {step} of {total}")
        self.step = step
        self.total = total
