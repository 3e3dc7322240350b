"""Model kinds: which module runs each ``kind`` of models.toml, and whether an entry can run here."""

from __future__ import annotations

import importlib

from bot.models import ModelEntry, Models
from engine.work import Kind, UserFacingError

# kind (as written in models.toml) → module under engine/kinds that exports its ``KIND``
KINDS: dict[str, str] = {
    "classic": "engine.kinds.classic",
    "diffusers-img2img": "engine.kinds.img2img",
    "upscale-spandrel": "engine.kinds.upscale",  # super-resolution weights (Real-ESRGAN, SwinIR, HAT), tiled
    "face-restore": "engine.kinds.face_restore",  # Fix face: GFPGAN/CodeFormer weights or an img2img model per face
    "image-to-video": "engine.kinds.animate",
    "instruct-pix2pix": "engine.kinds.edit",
    "flux-kontext": "engine.kinds.edit",
    "style-transfer": "engine.kinds.style",  # neural style transfer on onnxruntime (weights install style)
    "cutout": "engine.kinds.cutout",  # the subject on a transparent or new background (weights install cutout)
    "noop": "engine.kinds.noop",  # the source back unchanged: for measuring the queue (benchmarks, tests)
    # content classifiers ([safety.NAME] in models.toml): score pictures, never make them
    "nudenet": "engine.kinds.nudenet",  # NudeNet 320n on onnxruntime (the nsfw extra; AGPL-3.0 weights)
    "safety-checker": "engine.kinds.safety_checker",  # diffusers' StableDiffusionSafetyChecker weights
}


class ModelUnavailable(UserFacingError):
    """An entry that cannot run here; the message is user-safe ("needs weights: …")."""


def kind_of(entry: ModelEntry) -> Kind:
    """The entry's kind, as its module declares it (importing the module the first time)."""
    if entry.kind not in KINDS:
        raise ModelUnavailable(f"{entry.name}: unknown model kind {entry.kind!r}")
    kind = importlib.import_module(KINDS[entry.kind]).KIND
    if not isinstance(kind, Kind):
        raise TypeError(f"{KINDS[entry.kind]}.KIND is not an engine.work.Kind")
    return kind


def check(entry: ModelEntry) -> str | None:
    """None when the entry can run on this machine, else the reason (user-safe)."""
    try:
        return kind_of(entry).check(entry)
    except ModelUnavailable as error:
        return str(error)
    except ImportError as error:
        return f"needs the engine extra: pip install 'remixbot[engine]' ({error.name} missing)"


def availability(models: Models) -> dict[str, str | None]:
    """Every registry entry → None (runs here) or why not."""
    found = {entry.name: check(entry) for entry in models}
    for entry in models:  # an entry that drives another model (face-restore's inpaint_model) needs it to run
        other = str(entry.options.get("inpaint_model") or "")
        if other and found[entry.name] is None:
            if other not in found:
                found[entry.name] = f"misconfigured: inpaint_model {other!r} is not in models.toml"
            elif found[other]:
                found[entry.name] = f"needs {other}: {found[other]}"
    return found
