"""Labelled contact sheets: a --compare request's results side by side, and before | after.

A sheet is a row of columns on a dark background, one per model (or "before" and "after"), each
picture scaled to one common height with its label underneath in Pillow's default font. A column with
no picture (a model that failed) shows why in its place. Pillow only: no torch, no fonts to install.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (24, 24, 28)
TILE_BACKGROUND = (52, 52, 58)
TEXT = (240, 240, 240)
MUTED = (170, 170, 178)
MAX_HEIGHT = 512  # a picture's height at most: a sheet of four models stays near 2000 px wide
MAX_SHEET_HEIGHT = 1536  # several rows (--n) share this: the PNG stays well under 10 MB
GAP = 12
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True)
class Column:
    label: str  # the model name, "before", "after"
    pictures: tuple[Image.Image, ...] = ()  # stacked top to bottom (a job's outputs)
    note: str = ""  # shown in place of the pictures when there are none ("failed: needs weights")


def sheet(columns: list[Column], *, max_height: int = MAX_HEIGHT) -> Image.Image:
    """The columns side by side, pictures at one common height, each column labelled underneath."""
    if not columns:
        raise ValueError("a sheet needs at least one column")
    heights = [picture.height for column in columns for picture in column.pictures]
    rows = max(1, max(len(column.pictures) for column in columns))
    tile = min([max_height, MAX_SHEET_HEIGHT // rows - GAP, *heights]) if heights else max_height // 2
    size = max(14, tile // 18)
    font = ImageFont.load_default(size=size)
    small_size = max(12, tile // 26)
    small = ImageFont.load_default(size=small_size)
    label_height = round(size * 1.8)
    widths = [_column_width(column, tile) for column in columns]
    width = sum(widths) + GAP * (len(columns) + 1)
    height = GAP + rows * (tile + GAP) + label_height
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    x = GAP
    for column, column_width in zip(columns, widths, strict=True):
        y = GAP
        for picture in column.pictures:
            scaled = _scaled(picture, tile)
            canvas.paste(scaled, (x + (column_width - scaled.width) // 2, y))
            y += tile + GAP
        if not column.pictures:
            draw.rectangle((x, y, x + column_width - 1, y + tile - 1), fill=TILE_BACKGROUND)
            lines = _wrap(draw, column.note or "no image", small, column_width - 16)
            line_height = round(small_size * 1.3)
            top = y + tile // 2 - line_height * (len(lines) - 1) // 2
            for i, line in enumerate(lines):
                _centred(draw, line, (x + column_width // 2, top + i * line_height), small, MUTED)
        label = _fit_text(draw, column.label, font, column_width)
        _centred(draw, label, (x + column_width // 2, height - label_height // 2), font, TEXT)
        x += column_width + GAP
    return canvas


def _column_width(column: Column, tile: int) -> int:
    if not column.pictures:
        return round(tile * 0.75)
    return max(_scaled_size(picture, tile)[0] for picture in column.pictures)


def _scaled_size(picture: Image.Image, height: int) -> tuple[int, int]:
    return max(1, round(picture.width * height / picture.height)), height


def _scaled(picture: Image.Image, height: int) -> Image.Image:
    size = _scaled_size(picture, height)
    picture = picture.convert("RGB")
    return picture if picture.size == size else picture.resize(size, Image.Resampling.LANCZOS)


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: Font, width: int) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Font, width: int, most: int = 6) -> list[str]:
    """``text`` in lines of at most ``width`` pixels (at most ``most`` lines, the last one cut)."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > most:
        lines = lines[: most - 1] + [" ".join(lines[most - 1 :])]
    return [_fit_text(draw, line, font, width) for line in lines] or [""]


def _centred(
    draw: ImageDraw.ImageDraw, text: str, centre: tuple[int, int], font: Font, fill: tuple[int, int, int]
) -> None:
    draw.text(centre, text, font=font, fill=fill, anchor="mm")
