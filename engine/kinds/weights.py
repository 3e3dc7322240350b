"""Model files that spandrel loads: the checks and the loading that upscale and face-restore share.

spandrel reads a ``.pth``/``.pt``/``.ckpt``/``.safetensors`` file and tells its architecture
(Real-ESRGAN, SwinIR, HAT, GFPGAN, RestoreFormer, …) from the weights' names and shapes. The
architectures with restrictive licences (CodeFormer among them) live in ``spandrel_extra_arches``,
an opt-in install (``pip install 'remixbot[extra-arches]'``); when it is installed they are known too.

``weights_problem`` and ``options_problem`` need neither torch nor spandrel, so ``check()`` stays cheap.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

from bot.models import ModelEntry
from engine.kinds import sources
from engine.work import UserFacingError

log = logging.getLogger(__name__)

SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")
ENGINE_EXTRA = "needs the engine extra: pip install 'remixbot[engine]' (spandrel missing)"


def weights_problem(entry: ModelEntry) -> str | None:
    """Why ``entry.source`` cannot be loaded here (user-safe), or None. Reads no file."""
    source = entry.source.strip()
    if not source:
        return f'misconfigured: {entry.name} needs source = "<a .pth or .safetensors file>" in models.toml'
    path = Path(source).expanduser()
    if not path.is_file():
        return f"needs weights: {path} not found"
    if path.suffix.lower() not in SUFFIXES:
        return f"misconfigured: {path.name} is not a .pth, .pt, .ckpt or .safetensors file"
    if importlib.util.find_spec("spandrel") is None:
        return ENGINE_EXTRA
    return None


def int_option(entry: ModelEntry, key: str, default: int, low: int, high: int) -> int:
    """An integer option of the entry within [low, high]; ValueError (user-safe text) otherwise."""
    value = entry.options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"misconfigured: {key} = {value!r} for {entry.name} (a whole number from {low} to {high})")
    return value


def load_descriptor(entry: ModelEntry, device: str) -> Any:
    """The entry's weights as a spandrel ``ImageModelDescriptor`` on ``device``, in eval mode. On CUDA
    in the entry's ``dtype`` (float16 by default) when the architecture supports it, else float32."""
    import spandrel

    registry = spandrel.MAIN_REGISTRY
    try:
        import spandrel_extra_arches
    except ImportError:
        extra = False
    else:
        extra = True
        registry = registry.copy()
        registry.add(*spandrel_extra_arches.EXTRA_REGISTRY, ignore_duplicates=True)
    path = Path(entry.source.strip()).expanduser()
    try:
        descriptor = spandrel.ModelLoader(device, registry=registry).load_from_file(path)
    except spandrel.UnsupportedModelError as error:
        hint = "" if extra else " (CodeFormer and a few others need pip install 'remixbot[extra-arches]')"
        raise UserFacingError(f"misconfigured: {path.name} is not a model spandrel knows{hint}") from error
    except Exception as error:  # a damaged or foreign file: unpickling refused, shapes that do not fit, …
        if is_out_of_memory(error):
            raise
        log.warning("could not load %s: %s", path, error)
        reason = f"misconfigured: {path.name} could not be loaded (damaged, or not model weights)"
        raise UserFacingError(reason) from error
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise UserFacingError(f"misconfigured: {path.name} is an inpainting model, not an image-to-image one")
    if descriptor.input_channels not in (1, 3) or descriptor.output_channels not in (1, 3):
        raise UserFacingError(
            f"misconfigured: {path.name} takes {descriptor.input_channels}-channel images; "
            "only RGB and greyscale models are supported"
        )
    descriptor.eval()
    if device.startswith("cuda"):  # on the CPU spandrel's models stay in float32
        name = sources.dtype_name(entry, device)
        if name == "float16" and descriptor.supports_half:
            descriptor.half()
        elif name == "bfloat16" and descriptor.supports_bfloat16:
            descriptor.bfloat16()
    return descriptor


def architecture(descriptor: Any) -> str:
    """What spandrel calls the model's architecture: "RealESRGAN Compact", "GFPGAN", …"""
    return str(descriptor.architecture.name)


def to_tensor(pixels: np.ndarray, descriptor: Any) -> Any:
    """uint8 RGB (H, W, 3) → a (1, C, H, W) tensor in [0, 1] on the model's device, in its dtype."""
    import torch

    if descriptor.input_channels == 1:
        pixels = (pixels @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    tensor = torch.from_numpy(np.array(pixels)).to(descriptor.device)  # a copy: the source is read-only
    return tensor.permute(2, 0, 1).unsqueeze(0).to(descriptor.dtype).div_(255.0)


def to_pixels(tensor: Any) -> np.ndarray:
    """A (1, C, H, W) tensor in [0, 1] → uint8 RGB (H, W, 3) on the CPU."""
    import torch

    with torch.inference_mode():  # in place: no extra full-size copies of a big tile's output
        pixels = tensor[0].float().clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    pixels = pixels.permute(1, 2, 0).cpu().numpy()
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def is_out_of_memory(error: BaseException) -> bool:
    return type(error).__name__ == "OutOfMemoryError" or "out of memory" in str(error).lower()
