"""Prompt → CLIP embeddings, with the most recent ones kept.

A show repeats itself: the same prompt with a new seed, the same (usually empty)
negative prompt in every job. Their embeddings depend on the text alone, so the
last few are kept on the device and a repeated text costs no text-encoder pass
(and, with model offload, no transfer of the text encoder to the GPU).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

MAX_TOKENS = 77


class PromptEncoder:
    """Encodes texts with ``text_encoder``; ``active`` brings it to the device for a pass.
    Not thread-safe: the engine's lock serialises its use."""

    def __init__(
        self,
        tokenizer: Any,
        text_encoder: Any,
        device: torch.device,
        dtype: torch.dtype,
        active: Callable[[Any], contextlib.AbstractContextManager[None]],
        keep: int = 16,
    ) -> None:
        self._tokenizer = tokenizer
        self._text_encoder = text_encoder
        self._device = device
        self._dtype = dtype
        self._active = active
        self._keep = keep
        self._recent: OrderedDict[str, tuple[torch.Tensor, str | None]] = OrderedDict()

    def encode(self, text: str) -> tuple[torch.Tensor, str | None]:
        """(1×77×width embeddings, and when ``text`` was longer than 77 tokens and was cut, the part of
        it the model saw; None when it saw all of it)."""
        if text in self._recent:
            self._recent.move_to_end(text)
            return self._recent[text]
        encoded = self._encode(text)
        self._recent[text] = encoded
        if len(self._recent) > self._keep:
            self._recent.popitem(last=False)
        return encoded

    def _encode(self, text: str) -> tuple[torch.Tensor, str | None]:
        tok = self._tokenizer
        tokens = tok(text, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
        ids = tokens.input_ids
        seen = self._seen(text, ids[0]) if self._length(text) > MAX_TOKENS else None
        mask = None
        if getattr(self._text_encoder.config, "use_attention_mask", False):
            # The tokenizer's own mask, as diffusers passes it: CLIP pads with its end-of-text token,
            # so comparing ids with the pad id would hide the prompt's own end-of-text token too.
            mask = tokens.attention_mask.to(self._device)
        with self._active(self._text_encoder):
            out = self._text_encoder(ids.to(self._device), attention_mask=mask)[0]
        return out.to(self._dtype), seen

    def _length(self, text: str) -> int:
        return len(self._tokenizer(text, truncation=False, verbose=False).input_ids)

    def _seen(self, text: str, ids: torch.Tensor) -> str:
        """The longest beginning of ``text``, cut between words, that fits in the 77 tokens: what the
        model saw, in the writer's own words (a first word longer than that: the tokens, decoded)."""
        words = text.split(" ")
        fits, over = 0, len(words)  # words[:fits] fits, words[:over] does not
        while over - fits > 1:
            middle = (fits + over) // 2
            if self._length(" ".join(words[:middle])) <= MAX_TOKENS:
                fits = middle
            else:
                over = middle
        if fits:
            return " ".join(words[:fits])
        return str(self._tokenizer.decode(ids, skip_special_tokens=True))
