"""An entry's own VAE in place of its pipeline's: ``vae = "madebyollin/sdxl-vae-fp16-fix"``.

SDXL's VAE overflows in float16. Its config says ``force_upcast``, so diffusers encodes and decodes
with it in float32 (correct, but the VAE then takes float32's time and memory at 1024 px); the
fp16-fix VAE, fine-tuned to stay in range, says ``force_upcast: false`` and runs in float16 like the
rest. Either way the VAE's own config decides; this option only picks which VAE.

``vae`` is a folder or a cached hub id holding an ``AutoencoderKL`` (``config.json`` and weights at
its root), found like any source (``engine.kinds.sources``); it loads in the entry's dtype. The
``diffusers-img2img`` kind asks ``check`` from its check and passes ``kwargs`` to its load.
"""

from __future__ import annotations

from typing import Any

from bot.models import ModelEntry
from engine.kinds import sources


def _named(entry: ModelEntry) -> str:
    return str(entry.options.get("vae") or "").strip()


def check(entry: ModelEntry) -> str | None:
    """None when the entry names no VAE or its files are here; else what to download. No network."""
    name = _named(entry)
    if not name:
        return None
    source = sources.locate(name)
    if source.kind == "folder":
        if (source.path / "config.json").is_file():
            return None
        return f"needs weights: vae {name} has no config.json (not a diffusers AutoencoderKL folder)"
    if source.kind == "hub":
        if sources.cached(source.where, "config.json", entry) is not None:
            return None
        return f"needs weights: download the VAE {name} first (hf download {name})"
    return f"needs weights: vae {name} not found"


def kwargs(entry: ModelEntry, device: str) -> dict[str, Any]:
    """``{"vae": the loaded AutoencoderKL}`` for the pipeline's load, or {} when the entry names none."""
    name = _named(entry)
    if not name:
        return {}
    reason = check(entry)
    if reason:
        raise sources.MissingWeights(reason)
    import diffusers

    source = sources.locate(name)
    options: dict[str, Any] = {
        sources.dtype_kwarg(): sources.torch_dtype(entry, device),
        "local_files_only": sources.offline(entry),
    }
    if source.kind == "hub":
        options["cache_dir"] = sources.hub_cache_dir(entry)
    autoencoder: Any = diffusers.AutoencoderKL  # its from_pretrained is unannotated
    return {"vae": autoencoder.from_pretrained(source.where, **options)}
