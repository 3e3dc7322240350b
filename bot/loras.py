"""LoRAs as A1111 writes them in a prompt: ``<lora:pixel_art:0.8>``.

The core reads the tags once (``split_loras``): the request carries the prompt without them and
``loras`` as ``(name, weight)`` pairs; the names are the stems of the ``.safetensors`` files in
``REMIXBOT_LORA_DIR`` (``find_loras``). The PNG parameters put the tags back at the end of the
prompt (``lora_tags``) with A1111's ``Lora hashes``.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path

MAX_LORAS = 5  # in one request
MIN_WEIGHT, MAX_WEIGHT = -2.0, 2.0
MAX_FILES = 10_000  # a LoRA folder is listed once, at start; more files than this are not read
_TAG = re.compile(r"<lora:([^:<>]{1,100})(?::([^:<>]{0,20}))?(?::[^<>]{0,40})?>", re.IGNORECASE)
_SPACES = re.compile(r"[ \t]{2,}")


class LoraError(ValueError):
    """A tag that can't be used; ``str(error)`` is a friendly message for the chat."""


def find_loras(folder: Path | None) -> dict[str, Path]:
    """Every ``*.safetensors`` under ``folder`` by its file name without the extension."""
    if folder is None or not folder.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.safetensors"))[:MAX_FILES]:
        if path.is_file():
            found.setdefault(path.stem, path)
    return found


def split_loras(prompt: str, known: Mapping[str, Path]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The prompt without its ``<lora:name:weight>`` tags, and the tags' (name, weight as written) in order.

    A tag without a weight has weight "1"; a name given twice keeps its last weight.
    """
    loras: dict[str, str] = {}
    for match in _TAG.finditer(prompt):
        name = resolve_lora(match[1].strip(), known)
        loras[name] = (match[2] or "").strip() or "1"
    if len(loras) > MAX_LORAS:
        raise LoraError(f"Up to {MAX_LORAS} LoRAs at once, please (got {len(loras)}).")
    if not loras:
        return prompt, ()
    text = _SPACES.sub(" ", _TAG.sub("", prompt)).strip().strip(",").strip()
    return text, tuple(loras.items())


def resolve_lora(name: str, known: Mapping[str, Path]) -> str:
    if name in known:
        return name
    lowered = {key.lower(): key for key in known}
    if name.lower() in lowered:
        return lowered[name.lower()]
    if not known:
        raise LoraError(f"There's no LoRA called {name!r}: this server has no LoRAs.")
    close = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(lowered[c] for c in close)}?" if close else " Send /loras to see them."
    raise LoraError(f"There's no LoRA called {name!r}.{hint}")


def lora_tags(loras: tuple[tuple[str, float], ...]) -> str:
    """The A1111 tags for ``loras``: ``<lora:pixel_art:0.8> <lora:ink:1>``."""
    return " ".join(f"<lora:{name}:{weight:g}>" for name, weight in loras)


def with_lora_tags(prompt: str, loras: tuple[tuple[str, float], ...]) -> str:
    """The prompt as A1111 writes it: the tags at the end."""
    return f"{prompt} {lora_tags(loras)}".strip() if loras else prompt


@functools.lru_cache(maxsize=256)
def _hash(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(8 + int.from_bytes(fh.read(8), "little"))  # the tensors only, after the header
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()[:12]


def short_hash(path: Path) -> str:
    """A1111's LoRA hash (sd-scripts' "addnet" hash, 12 hex digits: Civitai's AutoV3): sha256 of the tensors."""
    stat = path.stat()
    return _hash(path, stat.st_size, stat.st_mtime_ns)


def lora_hashes(loras: tuple[tuple[str, float], ...], files: Mapping[str, Path]) -> dict[str, str]:
    """``{name: short hash}`` for the LoRAs whose files are here (computing a hash reads the whole file)."""
    return {name: short_hash(files[name]) for name, _ in loras if name in files and files[name].is_file()}


# Cross-attention width → the base model family (the engine refuses a LoRA made for another one).
FAMILIES = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}
_CROSS_ATTENTION = re.compile(r"attn2[._]to_k.*(lora_down|lora_A|lora\.down)\.weight$")
_MAX_HEADER = 1 << 27


@functools.lru_cache(maxsize=1024)
def _base(path: Path, size: int, mtime_ns: int) -> str:
    try:
        with open(path, "rb") as fh:
            length = int.from_bytes(fh.read(8), "little")
            if not 0 < length < min(_MAX_HEADER, size):
                return "unreadable"
            header = json.loads(fh.read(length))
    except (OSError, ValueError):
        return "unreadable"
    if not isinstance(header, dict):
        return "unreadable"
    meta = header.pop("__metadata__", None)
    if isinstance(meta, dict):
        named = str(meta.get("ss_base_model_version") or meta.get("modelspec.architecture") or "").lower()
        if "xl" in named:
            return "SDXL"
        if named.startswith(("sd_v1", "stable-diffusion-v1")):
            return "SD 1.x"
        if named.startswith(("sd_v2", "stable-diffusion-v2")):
            return "SD 2.x"
    if any(key.startswith(("lora_te2_", "text_encoder_2.")) for key in header):
        return "SDXL"
    widths = {
        int(value["shape"][1])
        for key, value in header.items()
        if _CROSS_ATTENTION.search(key) and isinstance(value, dict) and len(value.get("shape", ())) >= 2
    }
    return FAMILIES.get(next(iter(widths)), "unknown") if len(widths) == 1 else "unknown"


def lora_base(path: Path) -> str:
    """The base model a LoRA file was made for ("SD 1.x", "SD 2.x", "SDXL"), from its header only:
    its training metadata, else its tensors' shapes; "unknown" when neither tells."""
    try:
        stat = path.stat()
    except OSError:
        return "unreadable"
    return _base(path, stat.st_size, stat.st_mtime_ns)
