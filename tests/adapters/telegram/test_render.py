"""The pure parts: captions within Telegram's limit, job tags read back, button data within 64
bytes, the download limit, /remix parsing."""

from __future__ import annotations

import html
import re
import time
from dataclasses import replace
from pathlib import Path

from adapters.telegram import render
from adapters.telegram.bot import download_limit
from adapters.telegram.inputs import remix_args
from adapters.telegram.keyboards import (
    SETTING_PATTERN,
    album_keyboard,
    history_keyboard,
    result_keyboard,
    settings_keyboard,
)
from bot.actions import BUTTON_PATTERN
from bot.history import JobRecord, OutputRecord
from bot.jobs import Action, Origin, Request, Status
from bot.models import parse_models
from bot.requests import Defaults

MB = 1024 * 1024


def record(prompt: str = "watercolor", job_id: str = "3f9a0c1b2d4e") -> JobRecord:
    request = Request(prompt=prompt, model="classic", strength=0.6, seed=42)
    output = OutputRecord(job_id, 1, 43, Path("x.png"), "image/png", 64, 64)
    return JobRecord(
        id=job_id,
        user_id=1,
        action=Action.remix,
        request=request,
        origin=Origin("telegram", "1", "1"),
        group="classic",
        status=Status.done,
        parent_job=None,
        parent_output=None,
        created_at=time.time(),
        started_at=None,
        finished_at=None,
        error="",
        engine="classic",
        note="",
        status_message="",
        outputs=(output,),
    )


def shown(caption: str) -> str:
    """What a client shows of an HTML caption (and what Telegram counts against the limit)."""
    return html.unescape(re.sub(r"<[^>]+>", "", caption))


def test_captions_fit_and_their_tag_reads_back_even_when_the_prompt_mentions_a_job():
    long = record("job 000000000000 " + "a <b>&" * 300)
    text = shown(render.caption(long, long.outputs[0], count=2))
    assert len(text) <= render.CAPTION_LIMIT
    assert text.endswith("job 3f9a0c1b2d4e #2")
    assert render.result_tag(text) == ("3f9a0c1b2d4e", 1)
    single = shown(render.caption(record(), record().outputs[0], count=1))
    assert render.result_tag(single) == ("3f9a0c1b2d4e", 0)
    assert render.result_tag("no tag here") is None


def test_every_button_fits_in_64_bytes_and_matches_its_pattern():
    models = parse_models(f'[models.{"m" * 54}]\nkind = "classic"\n[models.{"n" * 60}]\nkind = "classic"')
    markups = [
        result_keyboard("3f9a0c1b2d4e", 3),
        album_keyboard("3f9a0c1b2d4e", [0, 1, 2, 3]),
        settings_keyboard(Defaults(), models, 4),
        history_keyboard([record()] * 5, 3, True),
    ]
    data = [b.callback_data for markup in markups for row in markup.inline_keyboard for b in row]
    assert all(len(d.encode()) <= 64 for d in data)
    assert "set:model:" + "m" * 54 in data and not any("n" * 60 in d for d in data)
    for d in data:
        assert BUTTON_PATTERN.match(d) or SETTING_PATTERN.match(d) or d.startswith("hist:")
        assert not (BUTTON_PATTERN.match(d) and SETTING_PATTERN.match(d))


def test_remix_command_parsing():
    assert remix_args("/remix watercolor --strength 0.6", "RemixBot") == "watercolor --strength 0.6"
    assert remix_args("/remix@remixbot  a “quoted” prompt", "RemixBot") == "a “quoted” prompt"
    assert remix_args("/remix", "RemixBot") == ""
    assert remix_args("/remix@OtherBot warm", "RemixBot") is None
    assert remix_args("/remixes warm", "RemixBot") is None
    assert remix_args("warm", "RemixBot") is None


def test_download_limit_is_the_bot_api_cap_unless_self_hosted(settings):
    official = replace(settings, limits=replace(settings.limits, max_image_bytes=50 * MB))
    assert download_limit(official) == 20 * MB
    assert download_limit(replace(official, telegram_base_url="https://api.telegram.org/bot")) == 20 * MB
    assert download_limit(replace(official, telegram_base_url="http://localhost:8081/bot")) == 50 * MB


def test_info_fits_telegram_even_for_the_longest_prompts():
    request = Request(
        prompt="a <b>&" * 166, model="classic", strength=0.6, seed=42, negative_prompt="dark & <grim> " * 71
    )
    long = replace(record(), request=request)
    text = render.info_text(long)
    assert len(text) <= render.MESSAGE_LIMIT, "within the limit even before Telegram parses the HTML"
    assert shown(text).startswith("Job 3f9a0c1b2d4e") and "…" in shown(text)
    assert "<b>a" not in text, "user text is escaped"
