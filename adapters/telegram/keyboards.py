"""Inline keyboards. Result buttons carry exactly the core's button ids (``upscale:<job>:1``); the
settings and history keyboards have their own prefixes (``set:`` and ``hist:``) that never match
``bot.actions.BUTTON_PATTERN``. Every callback_data fits Telegram's 64 bytes.
"""

from __future__ import annotations

import re

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.actions import MORE_ROWS, Button, button_id
from bot.flags import number
from bot.history import JobRecord
from bot.models import Models
from bot.presenter import LABELS
from bot.requests import Defaults

MAX_CALLBACK_DATA = 64  # bytes
SETTING_PATTERN = re.compile(r"^set:(?P<key>model|strength|n):(?P<value>[\w.\-]{1,54})$")
HISTORY_PATTERN = re.compile(r"^hist:(?P<page>\d{1,4})$")
STRENGTHS = (0.3, 0.45, 0.6, 0.75, 0.9)
DEFAULT_STRENGTH = "default"  # set:strength:default → the model's own strength

# The keyboard under one result, by row; ➕ More swaps its last row for the core's MORE_ROWS (Zoom out,
# Pan, Cut out) above Delete, on the same message.
RESULT_ROWS = (
    (Button.reroll, Button.vary, Button.varystrong),
    (Button.upscale, Button.fixface, Button.animate),
    (Button.original, Button.source, Button.info),
)
MAX_ROW = 8  # buttons in one row of an inline keyboard
# Per-image buttons under an album (albums cannot carry a keyboard): one row per image, its ➕ More
# adding that image's MORE_ROWS under it.
PER_IMAGE = tuple(button for button in Button if button.takes_output and not any(button in row for row in MORE_ROWS))
assert len(PER_IMAGE) <= MAX_ROW


def press_button(text: str, button: Button, job_id: str, index: int | None = None) -> InlineKeyboardButton:
    return InlineKeyboardButton(text, callback_data=button_id(button, job_id, index))


def labelled(button: Button, job_id: str, index: int | None = None) -> InlineKeyboardButton:
    """A button with the core's label."""
    return press_button(str(LABELS[button]), button, job_id, index)


def _index(button: Button, index: int) -> int | None:
    return index if button.takes_output else None


def result_keyboard(job_id: str, index: int = 0, *, image: bool = True, more: bool = False) -> InlineKeyboardMarkup:
    """The buttons under a single result, with ➕ More beside Delete (``more``: the extra rows shown
    instead); a clip gets Reroll, Original, Info and Delete only."""
    if not image:
        row = [labelled(Button.reroll, job_id), labelled(Button.original, job_id, index), labelled(Button.info, job_id)]
        return InlineKeyboardMarkup([row, [labelled(Button.delete, job_id)]])
    rows = [[labelled(button, job_id, _index(button, index)) for button in row] for row in RESULT_ROWS]
    if more:
        rows += [[labelled(button, job_id, index) for button in row] for row in MORE_ROWS]
        rows.append([labelled(Button.delete, job_id)])
    else:
        rows.append([labelled(Button.more, job_id, index), labelled(Button.delete, job_id)])
    return InlineKeyboardMarkup(rows)


def album_keyboard(job_id: str, indexes: list[int], *, more: int | None = None) -> InlineKeyboardMarkup:
    """The keyboard message that follows an album: Reroll all, then a row per image (``more``: the image
    whose extra rows show under its row)."""
    rows = [[press_button(f"{LABELS[Button.reroll]} all", Button.reroll, job_id), labelled(Button.info, job_id)]]
    for index in indexes:
        rows.append([press_button(f"{LABELS[b].emoji} {index + 1}", b, job_id, index) for b in PER_IMAGE])
        if index == more:
            rows += [[press_button(f"{LABELS[b]} #{index + 1}", b, job_id, index) for b in row] for row in MORE_ROWS]
    return InlineKeyboardMarkup(rows)


def status_keyboard(job_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[labelled(Button.cancel, job_id)]])


def settings_keyboard(defaults: Defaults, models: Models, max_n: int) -> InlineKeyboardMarkup:
    def choice(text: str, data: str, chosen: bool) -> InlineKeyboardButton:
        return InlineKeyboardButton(("✓ " if chosen else "") + text, callback_data=data)

    names = [
        name
        for name in models.names()
        if len(f"set:model:{name}".encode()) <= MAX_CALLBACK_DATA and SETTING_PATTERN.match(f"set:model:{name}")
    ]
    model_rows = [names[i : i + 3] for i in range(0, len(names), 3)]
    rows = [[choice(name, f"set:model:{name}", name == defaults.model) for name in row] for row in model_rows]
    rows.append(
        [choice(number(s), f"set:strength:{number(s)}", defaults.strength == s) for s in STRENGTHS]
        + [choice("auto", f"set:strength:{DEFAULT_STRENGTH}", defaults.strength is None)]
    )
    rows.append([choice(f"n={n}", f"set:n:{n}", defaults.num_images_per_prompt == n) for n in range(1, max_n + 1)])
    return InlineKeyboardMarkup(rows)


def history_keyboard(records: list[JobRecord], page: int, more: bool) -> InlineKeyboardMarkup:
    rows = [[press_button(f"🔄 {i + 1}", Button.reroll, record.id) for i, record in enumerate(records)]]
    paging = []
    if page > 0:
        paging.append(InlineKeyboardButton("« Newer", callback_data=f"hist:{page - 1}"))
    if more:
        paging.append(InlineKeyboardButton("Older »", callback_data=f"hist:{page + 1}"))
    if paging:
        rows.append(paging)
    return InlineKeyboardMarkup(rows)
