"""A diffusers pipeline's images, checked before anyone sees them.

A blank image is a failure with a message the user can read (``BlankOutput``): NaNs (a float16
overflow: the operator's fix is ``dtype = "bfloat16"`` or a fixed VAE) or an image the pipeline's
safety checker blacked out. Every diffusers kind asks for ``output_type="np"`` (floats, where NaNs
are still visible) and converts here, as ``output_type="pil"`` would have.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from engine.work import UserFacingError

log = logging.getLogger(__name__)


class BlankOutput(UserFacingError):
    """The pipeline produced a blank image: NaNs (a float16 overflow) or a safety-checker blackout.

    The message is safe to show to the user.
    """


def is_blank(array: Any) -> bool:
    """NaNs anywhere, or nothing but zeros."""
    return bool(np.isnan(array).any()) or not bool(np.any(array))


def images(arrays: Any, flagged: Sequence[bool] | None, label: str) -> list[Image.Image] | BlankOutput:
    """RGB images from a pipeline's float arrays in [0, 1] (N, H, W, 3), or why they cannot be shown.

    ``flagged`` is the pipeline's ``nsfw_content_detected`` (None when it has no safety checker);
    ``label`` names the model in the log.
    """
    for array, nsfw in zip(arrays, flagged or [False] * len(arrays), strict=False):
        if nsfw:
            return BlankOutput("the safety checker blanked an image; try another prompt or seed")
        if is_blank(array):
            log.warning(
                "%s produced a blank image (NaN or all black): a float16 overflow? try "
                'dtype = "bfloat16" or a fixed VAE',
                label,
            )
            return BlankOutput("the model produced a blank image; try again with another seed")
    from diffusers.image_processor import VaeImageProcessor

    pil: list[Image.Image] = VaeImageProcessor.numpy_to_pil(arrays)
    return [image.convert("RGB") for image in pil]
