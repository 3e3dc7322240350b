"""Prompt embeddings through compel: A1111 attention weights, ``BREAK`` and prompts past 77 tokens.

``bot.prompts.parse_prompt`` reads the A1111 syntax into weighted fragments; compel's
``EmbeddingsProvider`` tokenizes them, weighs them (up: scaled away from the empty prompt's
embedding; down: blended towards the prompt without them) and encodes prompts longer than the
tokenizer's 77 tokens as several chunks instead of truncating them. Each ``BREAK`` segment starts
its chunks afresh, as in A1111. SD 1.x/2.x use the text encoder's last hidden states; SDXL the
penultimate ones of both encoders side by side and the pooled embedding of the second (the refiner
has only the second), exactly what diffusers' own ``encode_prompt`` computes for a prompt with no
syntax.

A pipeline this does not know (no CLIP text encoder, or no ``prompt_embeds`` argument) gets the
prompt strings as before.

``PromptCache``: the embeddings of recent prompts, so a reroll or a variation (same prompt, new
seed) skips the text encoder. Its key is the caller's ``context`` (what else changes the
embeddings: the model, the active LoRAs at their weights) with ``SYNTAX`` (this module's way of
encoding) and the prompt text; least recently used entries go first.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from bot.prompts import MAX_WEIGHTED, Fragment, Segment, parse_prompt, weighted_count
from engine.work import UserFacingError

# What the key of a cached embedding says about how it was made: compel's A1111 syntax, weights, BREAK,
# 77-token chunks, last (SD) or penultimate (SDXL) hidden states. Change it when the encoding changes.
SYNTAX = "compel-a1111-v1"


class PromptCache:
    """A prompt's embeddings by (context, text), the ``size`` most recently used kept (0: none)."""

    def __init__(self, size: int):
        self.size = max(0, int(size))
        self._entries: OrderedDict[Hashable, tuple[Any, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> tuple[Any, Any] | None:
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return found

    def put(self, key: Hashable, value: tuple[Any, Any]) -> None:
        if self.size <= 0:
            return
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


def call_kwargs(
    pipe: Any,
    prompts: list[str],
    negatives: list[str],
    cache: PromptCache | None = None,
    context: Hashable = (),
) -> dict[str, Any]:
    """The prompt arguments of one pipeline call with one row per prompt (``negatives`` row for row).

    With a ``cache``, a prompt's embeddings are looked up under (``context``, ``SYNTAX``, text) first;
    ``context`` must name everything else that changes them (the model, its active LoRAs)."""
    encoders = _encoders(pipe)
    if not encoders:
        return {"prompt": prompts, "negative_prompt": negatives if any(negatives) else None}
    import torch

    xl = getattr(pipe, "text_encoder_2", None) is not None
    # diffusers' SDXL: an empty negative prompt is zeros, not the embedding of ""
    zero_empty = xl and bool(getattr(pipe.config, "force_zeros_for_empty_prompt", False))
    seen: dict[str, tuple[Any, Any]] = {}

    def embeddings(text: str) -> tuple[Any, Any]:
        if text in seen:
            return seen[text]
        key = (context, SYNTAX, text)
        found = cache.get(key) if cache is not None else None
        if found is None:
            found = _embeddings(encoders, text, xl)
            if cache is not None:
                cache.put(key, found)
        seen[text] = found
        return found

    with torch.no_grad():
        rows = [embeddings(text) for text in prompts + negatives]
        embeds = _pad([embed for embed, _ in rows], encoders)
        pooled = [pool for _, pool in rows]
        for index, text in enumerate(negatives, start=len(prompts)):
            if zero_empty and not text:
                embeds[index], pooled[index] = torch.zeros_like(embeds[index]), torch.zeros_like(pooled[index])
        count = len(prompts)
        kwargs = {"prompt_embeds": torch.cat(embeds[:count]), "negative_prompt_embeds": torch.cat(embeds[count:])}
        if xl:
            kwargs["pooled_prompt_embeds"] = torch.cat(pooled[:count])
            kwargs["negative_pooled_prompt_embeds"] = torch.cat(pooled[count:])
    return kwargs


def _encoders(pipe: Any) -> list[Any]:
    """compel's embeddings providers for the pipeline's CLIP text encoders; [] when it has none."""
    if "prompt_embeds" not in inspect.signature(pipe.__call__).parameters:
        return []
    from compel import ReturnedEmbeddingsType
    from compel.embeddings_provider import EmbeddingsProvider, SplitLongTextMode

    xl = getattr(pipe, "text_encoder_2", None) is not None
    pairs = [("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")][: 2 if xl else 1]
    returned = (
        ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED
        if xl
        else ReturnedEmbeddingsType.LAST_HIDDEN_STATES_NORMALIZED
    )
    providers = []
    for tokenizer_name, encoder_name in pairs:
        tokenizer, encoder = getattr(pipe, tokenizer_name, None), getattr(pipe, encoder_name, None)
        if tokenizer is None or encoder is None:
            continue  # the SDXL refiner has only the second encoder
        if not type(encoder).__name__.startswith("CLIPText"):
            return []
        providers.append(
            EmbeddingsProvider(
                tokenizer=tokenizer,
                text_encoder=encoder,
                truncate=False,  # long prompts: several 77-token chunks
                returned_embeddings_type=returned,
                split_long_text_mode=SplitLongTextMode.PHRASES,  # split at a comma, like A1111
                device=str(encoder.device),
            )
        )
    return providers


def _embeddings(encoders: list[Any], text: str, xl: bool) -> tuple[Any, Any]:
    """(embeddings [1, n×77, dim], pooled [1, dim] or None) of one prompt."""
    import torch

    segments = parse_prompt(text)
    if weighted_count(segments) > MAX_WEIGHTED:
        raise UserFacingError(f"the prompt has more than {MAX_WEIGHTED} weighted parts")
    per_encoder = []
    for provider in encoders:
        chunks = [_encode_segment(provider, segment) for segment in segments]
        per_encoder.append(torch.cat(chunks, dim=1))
    embeds = torch.cat(per_encoder, dim=-1) if xl else per_encoder[0]
    pooled = None
    if xl:  # the second encoder's pooled embedding of the words (first 77 tokens), as diffusers takes it
        words = " ".join("".join(fragment.text for fragment in segment).strip() for segment in segments)
        pooled = encoders[-1].get_pooled_embeddings([words], device=encoders[-1].device)
    return embeds, pooled


def _encode_segment(provider: Any, segment: Segment) -> Any:
    # A weighted fragment with no tokens (spaces, "[ ]") has nothing to weigh: compel would fail on it.
    fragments = [
        fragment if fragment.weight == 1.0 or _has_tokens(provider, fragment) else Fragment(fragment.text)
        for fragment in segment
    ]
    return provider.get_embeddings_for_weighted_prompt_fragments(
        [[fragment.text for fragment in fragments]],
        [[fragment.weight for fragment in fragments]],
        device=provider.device,
    )


def _has_tokens(provider: Any, fragment: Fragment) -> bool:
    return bool(provider.get_token_ids([fragment.text], include_start_and_end_markers=False)[0])


def _pad(embeds: list[Any], encoders: list[Any]) -> list[Any]:
    """Every row as long as the longest, padded with the empty prompt's embedding (77 tokens at a time)."""
    import torch

    longest = max(e.shape[1] for e in embeds)
    if all(e.shape[1] == longest for e in embeds):
        return embeds
    empty = torch.cat([provider.empty_z for provider in encoders], dim=-1).to(embeds[0].dtype)
    padded = []
    for e in embeds:
        repeats = (longest - e.shape[1]) // empty.shape[1]
        padded.append(torch.cat([e, *([empty.to(e.device)] * repeats)], dim=1) if repeats else e)
    return padded
