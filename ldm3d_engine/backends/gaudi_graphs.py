"""The UNet under HPU graphs, captured and replayed the way optimum-habana's
``GaudiStableDiffusionLDM3DPipeline`` does it (its ``capture_replay``), in our own code.

The first call with a given set of inputs captures the UNet's forward into an ``HPUGraph`` on a
stream of its own, on copies of the call's inputs that it keeps with the output tensor (optimum-habana
keeps the caller's own input tensors; a copy cannot alias the prompt cache); a later call with
inputs of the same key copies its inputs into those tensors, replays the graph, waits for the
default stream and returns a copy of the graph's output tensor (optimum-habana returns the tensor
itself, which the next replay overwrites: fine for its DDIM, not for a sampler that keeps earlier
outputs, such as PNDM). optimum-habana keys a graph by Habana's ``input_hash`` of the
inputs; our key is each input's shape and dtype, plus the seamless state of the UNet's
convolutions (``variant``: ``wrap``/``flat``), which optimum-habana does not have: a graph
captured with the other padding is never replayed, and switching back and forth keeps both.
optimum-habana's cache has no bound; ours keeps the :data:`MAX_GRAPHS` most recently used.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)

#: Graphs kept per UNet (a show runs at one or two sizes; each size and seamless state is one graph).
MAX_GRAPHS = 8
Key = tuple[Any, ...]


@dataclass(frozen=True)
class Captured:
    graph: Any
    inputs: tuple[torch.Tensor | None, ...]
    output: torch.Tensor


class HpuGraphUNet:
    """``unet(sample, t, encoder_hidden_states=…, class_labels=…, return_dict=False)`` replayed from HPU
    graphs; anything else (``config``, ``modules()``…) reads through to the UNet."""

    def __init__(self, unet: Any, hpu: Any, variant: Callable[[Any], str] | None, limit: int = MAX_GRAPHS) -> None:
        self.__dict__["_module"] = unet  # __getattr__ reads through to it: set without recursion
        self._hpu = hpu
        self._variant = variant
        self._stream = hpu.Stream()
        self._graphs: OrderedDict[Key, Captured] = OrderedDict()
        self._limit = limit

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_module"], name)

    @property
    def keyed_by_variant(self) -> bool:
        """Whether graphs of the two seamless states are told apart (else :meth:`clear` on a switch)."""
        return self._variant is not None

    @property
    def keys(self) -> list[Key]:
        """The captured graphs' keys, least recently used first."""
        return list(self._graphs)

    def clear(self) -> None:
        """Drop every captured graph (the UNet's convolutions changed and no ``variant`` tells them apart)."""
        self._graphs.clear()

    def __call__(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int | float,
        encoder_hidden_states: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        return_dict: bool = False,
    ) -> tuple[torch.Tensor]:
        # As optimum-habana's loop, the timestep reaches the graph as a tensor on the device.
        t = timestep if isinstance(timestep, torch.Tensor) else torch.tensor(timestep)
        inputs = (sample, t.to(sample.device), encoder_hidden_states, class_labels)
        key = self._key(inputs)
        captured = self._graphs.get(key)
        if captured is None:
            return (self._capture(key, inputs).clone(),)
        self._graphs.move_to_end(key)
        for static, new in zip(captured.inputs, inputs, strict=True):
            if static is not None and new is not None:
                static.copy_(new)
        captured.graph.replay()
        self._hpu.default_stream().synchronize()
        return (captured.output.clone(),)

    def _key(self, inputs: tuple[torch.Tensor | None, ...]) -> Key:
        variant = self._variant(self.__dict__["_module"]) if self._variant is not None else None
        shapes = tuple(None if x is None else (tuple(x.shape), x.dtype) for x in inputs)
        return (variant, *shapes)

    def _capture(self, key: Key, inputs: tuple[torch.Tensor | None, ...]) -> torch.Tensor:
        # The graph's inputs are copies, never the caller's tensors: later calls write into them, and the
        # caller's may live on (the prompt cache's embeddings, a view of the scheduler's timesteps).
        owned = tuple(None if x is None else x.clone() for x in inputs)
        sample, t, texts, labels = owned
        logger.info("capturing an HPU graph of the UNet for %s", key)
        with self._hpu.stream(self._stream):
            graph = self._hpu.HPUGraph()
            graph.capture_begin()
            output: torch.Tensor = self.__dict__["_module"](
                sample, t, encoder_hidden_states=texts, class_labels=labels, return_dict=False
            )[0]
            graph.capture_end()
        self._graphs[key] = Captured(graph, owned, output)
        while len(self._graphs) > self._limit:
            self._graphs.popitem(last=False)
        return output
