"""Pictures made for Telegram's eyes only: photo previews within sendPhoto's limits, and thumbnails.

The lossless PNG (with its parameters) stays in the history; ``📄 Original`` sends it as a file,
and a result too big to be a photo gets its file sent along with the preview.
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


def fits(data: bytes, max_bytes: int = PHOTO_MAX_BYTES) -> bool:
    """True when Telegram takes ``data`` as a photo as it is (size, sides, aspect ratio)."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    return (
        len(data) <= max_bytes
        and width + height <= PHOTO_MAX_SIDES
        and max(width, height) <= PHOTO_MAX_RATIO * max(1, min(width, height))
    )


def transparent(data: bytes) -> bool:
    """True for a picture with an alpha channel (a cut-out): a photo would lose it."""
    with Image.open(io.BytesIO(data)) as image:
        return "A" in image.getbands() or "transparency" in image.info


def preview(data: bytes, max_bytes: int = PHOTO_MAX_BYTES) -> bytes:
    """``data`` itself when Telegram accepts it as a photo, else a JPEG that fits (smaller until it does).
    A transparent picture is previewed on a checkerboard, so the photo shows what the file is."""
    see_through = transparent(data)
    if not see_through and fits(data, max_bytes):
        return data
    with Image.open(io.BytesIO(data)) as opened:
        image = on_checkerboard(opened) if see_through else opened
        side = PREVIEW_SIDE
        jpeg = _jpeg(image, side)
        while len(jpeg) > max_bytes and side > THUMBNAIL_SIDE:
            side = side * 3 // 4
            jpeg = _jpeg(image, side)
        return jpeg


def on_checkerboard(image: Image.Image, square: int = 16) -> Image.Image:
    """A transparent picture over light grey squares, the way image editors show transparency."""
    rgba = image.convert("RGBA")
    columns, rows = -(-rgba.width // square), -(-rgba.height // square)
    cells = Image.new("L", (columns, rows))
    cells.putdata([204 + 51 * ((x + y) % 2) for y in range(rows) for x in range(columns)])
    board = cells.resize((columns * square, rows * square), Image.Resampling.NEAREST).crop((0, 0, *rgba.size))
    return Image.alpha_composite(board.convert("RGBA"), rgba).convert("RGB")


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
