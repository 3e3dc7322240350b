"""Labelled sheets: pictures side by side at one height, each column labelled, a failure said in place."""

from __future__ import annotations

import numpy as np
from PIL import Image

from bot import sheets
from tests.fixtures import IMAGES  # noqa: E402


def photo(name: str) -> Image.Image:
    with Image.open(IMAGES / name) as image:
        return image.convert("RGB")


def text_pixels(region: np.ndarray, colour) -> int:
    return int((np.abs(region.astype(int) - colour).sum(axis=2) < 60).sum())


def test_columns_side_by_side_at_one_height_with_labels_and_a_failure_in_place():
    coffee, rocket = photo("coffee.png"), photo("rocket.jpg")  # 600x400 and a portrait
    columns = [
        sheets.Column("classic", (coffee,)),
        sheets.Column("fast", (rocket,)),
        sheets.Column("realism", note="failed: needs weights: download sdxl first"),
    ]
    sheet = np.asarray(sheets.sheet(columns, max_height=300))
    tile, gap = 300, sheets.GAP
    widths = [450, round(rocket.width * tile / rocket.height), round(tile * 0.75)]
    assert sheet.shape[1] == sum(widths) + gap * 4
    x = gap
    for column, width in zip(columns, widths, strict=True):
        if column.pictures:
            expected = np.asarray(column.pictures[0].resize((width, tile), Image.Resampling.LANCZOS))
            pasted = sheet[gap : gap + tile, x : x + width]
            assert np.abs(pasted.astype(int) - expected).mean() < 1
        else:
            assert text_pixels(sheet[gap : gap + tile, x : x + width], sheets.MUTED) > 30  # the reason, in place
        label = sheet[gap + tile + gap :, x : x + width]
        assert text_pixels(label, sheets.TEXT) > 40  # the model's name under its picture
        x += width + gap


def test_a_long_label_is_cut_to_its_column_and_tall_pictures_shrink_to_the_cap():
    tiny = Image.new("RGB", (40, 30), (200, 10, 10))
    tall = Image.new("RGB", (500, 2000), (10, 200, 10))
    long_name = "a very long model name " * 5
    sheet = sheets.sheet([sheets.Column(long_name, (tiny,)), sheets.Column("tall", (tall,))])
    assert sheet.height < 30 + 200  # the smallest picture sets the height: nothing is blown up
    assert sheets.sheet([sheets.Column("tall", (tall,))]).height < sheets.MAX_HEIGHT + 120
