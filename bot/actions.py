"""The action vocabulary every face shares, and the button ids that carry it.

A button id is ``action:job`` or ``action:job:index`` (e.g. ``upscale:3f9a0c1b2d4e:1``): at most
28 characters, so it fits Discord's custom_id (100) and Telegram's callback_data (64 bytes). The
same string is a discord.py ``DynamicItem`` template and a Telegram callback pattern
(``BUTTON_PATTERN``); everything else a button needs is looked up in the history, so buttons keep
working after a restart.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace

from bot.jobs import Action, Request


class Button(enum.StrEnum):
    """What a button under a result does. Those that make a job map to an ``Action``."""

    reroll = "reroll"  # same settings, same source, new seed
    vary = "vary"  # img2img of one output at a low strength, new seed
    varystrong = "varystrong"  # the same at a high strength
    upscale = "upscale"
    fixface = "fixface"
    animate = "animate"
    zoom15 = "zoom15"  # zoom out 1.5x
    zoom2 = "zoom2"  # zoom out 2x
    panleft = "panleft"
    panright = "panright"
    panup = "panup"
    pandown = "pandown"
    cutout = "cutout"  # the subject on a transparent background (or the parent's --background)
    more = "more"  # show the rest of an output's buttons (Zoom out, Pan, Cut out): no job of its own
    original = "original"  # send the lossless PNG (with its parameters) as a file
    source = "source"  # a before/after sheet of one output next to its source (Service.before_after)
    info = "info"  # full parameters
    delete = "delete"  # remove the result message (requester or admins)
    cancel = "cancel"  # cancel a queued or running job
    forget = "forget"  # confirm /forget: its "job" is the confirmation code Service.forget handed out

    @property
    def action(self) -> Action | None:
        return _ACTION_OF.get(self)

    @property
    def takes_output(self) -> bool:
        """True when the button acts on one output (needs an index)."""
        return self in (
            Button.vary,
            Button.varystrong,
            Button.upscale,
            Button.fixface,
            Button.animate,
            *_OUTPAINT,
            Button.cutout,
            Button.more,
            Button.original,
            Button.source,
        )


# The buttons a face keeps behind ➕ More: every platform shows them the same way, grouped in rows.
MORE_ROWS = (
    (Button.zoom15, Button.zoom2, Button.cutout),
    (Button.panleft, Button.panright, Button.panup, Button.pandown),
)


# What each Zoom out / Pan button asks of the outpaint action: (zoom, pan).
_OUTPAINT = {
    Button.zoom15: (1.5, None),
    Button.zoom2: (2.0, None),
    Button.panleft: (None, "left"),
    Button.panright: (None, "right"),
    Button.panup: (None, "up"),
    Button.pandown: (None, "down"),
}

_ACTION_OF = {
    Button.reroll: Action.reroll,
    Button.vary: Action.vary,
    Button.varystrong: Action.vary,
    Button.upscale: Action.upscale,
    Button.fixface: Action.fixface,
    Button.animate: Action.animate,
    **dict.fromkeys(_OUTPAINT, Action.outpaint),
    Button.cutout: Action.cutout,
}

BUTTON_PATTERN = re.compile(
    r"^(?P<button>" + "|".join(b.value for b in Button) + r"):(?P<job>[0-9a-f]{12})(?::(?P<index>\d{1,2}))?$"
)

# The template discord.py's DynamicItem takes (same grammar as BUTTON_PATTERN).
DISCORD_TEMPLATE = BUTTON_PATTERN.pattern


@dataclass(frozen=True)
class Press:
    """A parsed button id."""

    button: Button
    job_id: str
    index: int = 0

    @property
    def id(self) -> str:
        return button_id(self.button, self.job_id, self.index if self.button.takes_output else None)


def button_id(button: Button, job_id: str, index: int | None = None) -> str:
    return f"{button.value}:{job_id}" if index is None else f"{button.value}:{job_id}:{index}"


def parse_button(text: str) -> Press | None:
    """The press a button id stands for, or None when it is not one of ours."""
    match = BUTTON_PATTERN.match(text or "")
    if match is None:
        return None
    index = int(match["index"]) if match["index"] is not None else 0
    return Press(button=Button(match["button"]), job_id=match["job"], index=index)


def derive_request(
    press: Press,
    parent: Request,
    *,
    seed: int,
    model: str | None,
    vary_subtle: float,
    vary_strong: float,
    max_size: int | None = None,
    max_output_size: int | None = None,
) -> Request:
    """The request of the job a button makes from its parent's request.

    ``seed`` is the new job's seed (a fresh one for reroll/vary, the output's for the others);
    ``model`` the model that serves the action (None: keep the parent's); ``max_size`` the longest
    side a zoom out or pan may grow to; ``max_output_size`` the longest ``--size`` allowed now (a
    parent's larger one, from before the operator lowered the cap, is brought down to it).
    """
    request = replace(parent, seed=seed, compare=(), show_source=False, zoom=None, pan=None)
    if max_output_size is not None and request.size is not None and request.size > max_output_size:
        request = replace(request, size=max_output_size)
    if press.button is Button.vary:
        request = replace(request, strength=vary_subtle)
    elif press.button is Button.varystrong:
        request = replace(request, strength=vary_strong)
    elif press.button in (Button.upscale, Button.fixface, Button.animate, Button.cutout):
        request = replace(request, num_images_per_prompt=1)
    elif press.button in _OUTPAINT:
        zoom, pan = _OUTPAINT[press.button]
        request = replace(request, num_images_per_prompt=1, zoom=zoom, pan=pan, size=max_size)
    if model is not None:
        request = replace(request, model=model)
    return request
