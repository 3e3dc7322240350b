"""Pictures made for Telegram's eyes only: photo previews within sendPhoto's limits, and thumbnails.

The lossless PNG (with its parameters) stays in the history; ``📄 Original`` sends it as a file.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

PHOTO_MAX_BYTES = 10 * 1024 * 1024  # sendPhoto's upload limit
PHOTO_MAX_SIDES = 10000  # width + height
PHOTO_MAX_RATIO = 20
PREVIEW_SIDE = 2560
THUMBNAIL_SIDE = 320


def preview(data: bytes) -> bytes:
    """``data`` itself when Telegram accepts it as a photo, else a JPEG that fits."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        fits = (len(data) <= PHOTO_MAX_BYTES and width + height <= PHOTO_MAX_SIDES
                and max(width, height) <= PHOTO_MAX_RATIO * max(1, min(width, height)))
        if fits:
            return data
        return _jpeg(image, PREVIEW_SIDE)


def thumbnail(path: Path) -> bytes:
    """A small JPEG of an image file (a grey square when the file is gone or unreadable)."""
    try:
        with Image.open(path) as image:
            return _jpeg(image, THUMBNAIL_SIDE)
    except (OSError, ValueError):
        return _jpeg(Image.new("RGB", (THUMBNAIL_SIDE, THUMBNAIL_SIDE), (128, 128, 128)), THUMBNAIL_SIDE)


def _jpeg(image: Image.Image, side: int) -> bytes:
    copy = image.convert("RGB")
    copy.thumbnail((side, side))
    out = io.BytesIO()
    copy.save(out, format="JPEG", quality=88)
    return out.getvalue()
