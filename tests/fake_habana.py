"""A stand-in for Intel's Gaudi software (``habana_frameworks``), which we do not have, for
tests/test_gaudi.py. It is not Gaudi: everything runs on the CPU. It records what the backend
calls, in order (``mark_step``, graph capture and replay, stream waits), and what the environment
said when ``habana_frameworks.torch.core`` was imported, and it stands in for an HPU graph well
enough to check the replay path's data flow: a "graph" records the aten ops its capture ran
(a TorchDispatchMode) and a replay runs them again on the graph's input tensors, writing into the
tensors the capture produced. So a replay computes what a fresh call would, if and only if the
backend copied the call's inputs into the graph's. What it cannot tell: anything about numerics,
speed, memory or op coverage on Gaudi, whether a real ``HPUGraph`` captures these ops, or how
Habana's autocast applies the op lists.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

NAMES = ("habana_frameworks", "habana_frameworks.torch", "habana_frameworks.torch.core", "habana_frameworks.torch.hpu")
ENV = ("PT_HPU_AUTOCAST_LOWER_PRECISION_OPS_LIST", "PT_HPU_AUTOCAST_FP32_OPS_LIST", "PT_HPU_LAZY_MODE")


class _Tape(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Every aten op run while active, with its arguments and results."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.ops: list[tuple[Any, tuple[Any, ...], dict[str, Any], Any]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.ops.append((func, args, kwargs, out))
        return out


def _writes(func: Any) -> bool:
    """Whether the op writes into an input (in-place or ``out=``)."""
    return any(r.alias_info is not None and r.alias_info.is_write for r in func._schema.returns)


def _storages(tree: Any) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)}


def _is_view(args: Any, kwargs: Any, out: Any) -> bool:
    """Whether the recorded results share memory with the recorded inputs (``x.to(dtype)`` may, or copy)."""
    return bool(_storages(out)) and _storages(out) <= _storages((args, kwargs))


class FakeGraph:
    def __init__(self, fake: FakeHabana) -> None:
        self._fake = fake
        self._tape = _Tape()

    def capture_begin(self) -> None:
        self._fake.calls.append("capture_begin")
        self._tape.__enter__()  # type: ignore[no-untyped-call]

    def capture_end(self) -> None:
        self._tape.__exit__(None, None, None)  # type: ignore[no-untyped-call]
        self._fake.calls.append("capture_end")

    def replay(self) -> None:
        self._fake.calls.append("replay")
        with torch.autocast("cpu", enabled=False):  # the tape holds the ops as autocast left them
            for func, args, kwargs, out in self._tape.ops:
                if _is_view(args, kwargs, out) and not _writes(func):
                    continue  # a view of tensors the replay updates in place: already up to date
                result = func(*args, **kwargs)
                if _writes(func):  # an in-place op: it wrote into its recorded inputs again
                    continue
                for recorded, fresh in zip(tree_flatten(out)[0], tree_flatten(result)[0], strict=True):
                    if isinstance(recorded, torch.Tensor):
                        recorded.copy_(fresh)


class FakeHabana(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``available``: what ``hpu.is_available()`` says. Importable (through ``sys.meta_path``) once
    :meth:`installed`; ``env_at_core_import`` holds :data:`ENV` as the core's import saw it."""

    def __init__(self, available: bool = True) -> None:
        self.calls: list[str] = []
        self.available = available
        self.env_at_core_import: dict[str, str | None] | None = None

    # -- the import machinery ---------------------------------------------------

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name not in NAMES:
            return None
        return importlib.util.spec_from_loader(name, self, is_package=name in NAMES[:2])

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        if module.__name__.endswith(".core"):
            self.env_at_core_import = {name: os.environ.get(name) for name in ENV}
            module.mark_step = lambda: self.calls.append("mark_step")  # type: ignore[attr-defined]
        elif module.__name__.endswith(".hpu"):
            module.is_available = lambda: self.available  # type: ignore[attr-defined]
            module.device_count = lambda: 8  # type: ignore[attr-defined]
            module.Stream = lambda: object()  # type: ignore[attr-defined]
            module.stream = self._stream  # type: ignore[attr-defined]
            module.HPUGraph = lambda: FakeGraph(self)  # type: ignore[attr-defined]
            module.default_stream = lambda: types.SimpleNamespace(  # type: ignore[attr-defined]
                synchronize=lambda: self.calls.append("synchronize")
            )

    @contextlib.contextmanager
    def _stream(self, stream: object) -> Iterator[None]:
        self.calls.append("side_stream")
        yield

    @contextlib.contextmanager
    def installed(self) -> Iterator[FakeHabana]:
        """Importable inside the block; afterwards gone from ``sys.meta_path`` and ``sys.modules``."""
        for name in NAMES:
            sys.modules.pop(name, None)
        sys.meta_path.insert(0, self)
        try:
            yield self
        finally:
            sys.meta_path.remove(self)
            for name in NAMES:
                sys.modules.pop(name, None)

    def import_core_now(self) -> None:
        """Import Habana's core as another library would have, before the bridge asked for ``hpu``."""
        importlib.import_module("habana_frameworks.torch.core")

    def modules(self) -> tuple[Any, Any]:
        """(core, hpu), imported."""
        return (
            importlib.import_module("habana_frameworks.torch.core"),
            importlib.import_module("habana_frameworks.torch.hpu"),
        )
