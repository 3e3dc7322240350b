"""The settings an image carries from the tool that made it: AUTOMATIC1111 (and remixbot), ComfyUI,
NovelAI, InvokeAI and Fooocus.

``read_generation`` first gathers the texts a file carries (``embedded_texts``), each one bounded:
a PNG's ``tEXt``/``zTXt``/``iTXt`` chunks wherever they sit (A1111 puts them before the pixels,
other tools after them), and the EXIF UserComment of a JPEG or WebP (A1111, Fooocus). Then:

* an A1111 infotext (``parameters`` that is not JSON) is read by ``bot.images.parse_parameters``:
  linear in its length and aware of A1111's JSON quoting (``Lora hashes: "a: 1, b: 2"``);
* every other format by sd-parsers' parsers (ComfyUI's node graph, NovelAI's ``Comment`` JSON,
  InvokeAI's three variants, Fooocus' JSON) on those bounded texts.

The result uses ``parse_parameters``' keys (``prompt``, ``negative_prompt``, ``seed``,
``num_inference_steps``, ``guidance_scale``, ``strength``, ``model``, ``width``, ``height``), which
``bot.requests.request_from_parameters`` turns into a Request within the flags' bounds.

CPU work: callers on an event loop run it in a thread. Nothing here raises on a bad file.
"""

from __future__ import annotations

import logging
import math
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from sd_parsers.data import PromptInfo
from sd_parsers.exceptions import ParserError
from sd_parsers.parsers import ComfyUIParser, FooocusParser, InvokeAIParser, NovelAIParser, Parser

from bot import images
from bot.text import neutral

log = logging.getLogger(__name__)

MAX_TEXT = images.MAX_PARAMETERS  # characters kept of a text value (an infotext, a NovelAI prompt)
MAX_JSON = 256 * 1024  # characters of a JSON value (a ComfyUI graph); a longer one is skipped whole
MAX_LINKED_NODES = 120  # ComfyUI graphs up to this size are also read along their links (see _attempts)
MAX_CHUNKS = 64  # text chunks read from one PNG
MAX_TOTAL = 1024 * 1024  # characters of text kept from one file in all
# The keys whose value is JSON: cutting one short would only break it, so an oversized one is dropped.
JSON_KEYS = frozenset({"prompt", "workflow", "Comment", "invokeai_metadata", "invokeai_graph", "sd-metadata"})
_PNG = b"\x89PNG\r\n\x1a\n"
_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
_NO_LINKS = '{"links": []}'  # a ComfyUI "prompt" saved without its "workflow": nodes only, no graph links

A1111 = "AUTOMATIC1111"
# sd-parsers' readers for the formats other than A1111's infotext, in the order they are tried.
_PARSERS: tuple[Parser, ...] = (ComfyUIParser(), NovelAIParser(), InvokeAIParser(), FooocusParser())


@dataclass(frozen=True)
class Generation:
    """What a file says about how it was made: the tool, and the settings in ``parse_parameters``' keys."""

    tool: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        """It carries a prompt to remix with."""
        return bool(str(self.settings.get("prompt", "")).strip())


def read_generation(data: bytes) -> Generation | None:
    """The settings the file carries, or None when it carries none we can read."""
    texts = embedded_texts(data)
    if not texts:
        return None
    infotext = texts.get("parameters", "")
    if infotext and not infotext.lstrip().startswith("{"):
        return Generation(A1111, images.parse_parameters(infotext))
    found: Generation | None = None
    for parser, given in _attempts(texts):
        try:
            info = parser.parse(given)
        except ParserError:
            continue
        except Exception:  # a reader tripped on hostile data: the file simply carries nothing usable
            log.debug("%s could not read the metadata", type(parser).__name__, exc_info=True)
            continue
        found = Generation(str(info.generator.value), settings_of(info))
        if found.usable:
            return found
    return found


def _attempts(texts: dict[str, str]) -> Iterator[tuple[Parser, dict[str, Any]]]:
    """Each parser with the texts it reads. ComfyUI's graph is read first without its links (each
    sampler's prompts are then the text nodes it names directly: linear in the graph's size), and with
    them only for a graph of at most ``MAX_LINKED_NODES`` nodes: sd-parsers' walk along the links costs
    about the cube of the node count (400 nodes: seconds)."""
    for parser in _PARSERS:
        if isinstance(parser, ComfyUIParser):
            if "prompt" not in texts:
                continue
            yield parser, {**texts, "workflow": _NO_LINKS}
            if "workflow" in texts and texts["prompt"].count('"class_type"') <= MAX_LINKED_NODES:
                yield parser, dict(texts)
        else:
            yield parser, dict(texts)


def embedded_texts(data: bytes) -> dict[str, str]:
    """The texts the file carries by key, each cut to ``MAX_TEXT`` (a JSON one dropped past ``MAX_JSON``)."""
    try:
        if data.startswith(_PNG):
            return _bounded(png_texts(data))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = images.open_image(data)
            comment = images.user_comment(image) if image.format in ("JPEG", "MPO", "WEBP") else None
    except Exception:  # never raises: a file we can't read simply carries nothing
        log.debug("no metadata read", exc_info=True)
        return {}
    return _bounded(iter([("parameters", comment)])) if comment else {}


def _bounded(pairs: Iterator[tuple[str, str]]) -> dict[str, str]:
    kept: dict[str, str] = {}
    total = 0
    for key, value in pairs:
        if key in kept:
            continue
        if key in JSON_KEYS:
            if len(value) > MAX_JSON:
                continue
        else:
            value = value[:MAX_TEXT]
        if total + len(value) > MAX_TOTAL:
            break
        kept[key] = value
        total += len(value)
    return kept


def png_texts(data: bytes) -> Iterator[tuple[str, str]]:
    """(keyword, text) of a PNG's text chunks, in file order, before and after the pixels, in one pass
    over the chunk headers; compressed text is inflated only up to what is kept."""
    position, count = len(_PNG), 0
    while position + 8 <= len(data) and count < MAX_CHUNKS:
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        start = position + 8
        if start + length > len(data) or kind == b"IEND":
            return
        if kind in _TEXT_CHUNKS:
            count += 1
            found = _text_chunk(kind, data[start : start + length])
            if found is not None:
                yield found
        position = start + length + 4  # the CRC
    return


def _text_chunk(kind: bytes, body: bytes) -> tuple[str, str] | None:
    keyword, sep, rest = body.partition(b"\0")
    if not sep or not keyword:
        return None
    key = keyword.decode("latin-1")
    limit = (MAX_JSON if key in JSON_KEYS else MAX_TEXT) * 4 + 4  # bytes: UTF-8 takes up to 4 a character
    if kind == b"tEXt":
        return key, rest[:limit].decode("latin-1")
    if kind == b"zTXt":
        return key, _inflate(rest[1:], limit).decode("latin-1")
    # iTXt: compression flag, method, language\0, translated keyword\0, text (UTF-8)
    if len(rest) < 2:
        return None
    compressed = rest[0] == 1
    _, _, tail = rest[2:].partition(b"\0")
    _, _, text = tail.partition(b"\0")
    raw = _inflate(text, limit) if compressed else text[:limit]
    return key, raw.decode("utf-8", errors="replace")


def _inflate(data: bytes, limit: int) -> bytes:
    try:
        return zlib.decompressobj().decompress(data, limit)
    except zlib.error:
        return b""


# sd-parsers' PromptInfo → our keys -------------------------------------------------------------


def settings_of(info: PromptInfo) -> dict[str, Any]:
    """A parsed file's prompts and settings in ``parse_parameters``' keys (only the ones found)."""
    sampler = next((s for s in info.samplers if s.prompts), info.samplers[0] if info.samplers else None)
    values: dict[str, Any] = {k: v for k, v in info.metadata.items() if isinstance(k, str)}
    if sampler is not None:
        values.update(sampler.parameters)
    prompts = sampler.prompts if sampler is not None else []
    negatives = sampler.negative_prompts if sampler is not None else []
    found: dict[str, Any] = {
        "prompt": neutral(", ".join(dict.fromkeys(p.value for p in prompts)))[:MAX_TEXT].strip(),
    }
    negative = neutral(", ".join(dict.fromkeys(p.value for p in negatives)))[:MAX_TEXT].strip()
    if negative:
        found["negative_prompt"] = negative
    for ours, keys, kind in _KEYS:
        value = next((_number(values[key], kind) for key in keys if key in values), None)
        if value is not None:
            found[ours] = value
    strength = found.get("strength")
    if strength is not None and not 0 < strength < 1:
        del found["strength"]  # 1 (or 0) is a text-to-image run: the remix model's own strength fits better
    if sampler is not None and sampler.model is not None and sampler.model.name:
        found["model"] = neutral(str(sampler.model.name))[:100]
    return found


# our key, the keys the parsers use for it (after their normalisation), its type
_KEYS: tuple[tuple[str, tuple[str, ...], type], ...] = (
    ("seed", ("seed", "noise_seed"), int),
    ("num_inference_steps", ("steps",), int),
    ("guidance_scale", ("cfg_scale", "guidance_scale", "scale"), float),
    ("strength", ("denoise", "strength", "denoising_strength"), float),
    ("width", ("width",), int),
    ("height", ("height",), int),
)


def _number(value: Any, kind: type) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    if kind is int and isinstance(value, (int, str)) and str(value).strip().isdigit():
        return int(value)  # a seed past 2**53 stays exact
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return int(number) if kind is int else number
