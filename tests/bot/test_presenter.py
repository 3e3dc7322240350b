"""bot.presenter: status lines with ETA, durations, one label set, and /info within each face's limit."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from bot import presenter
from bot.actions import Button
from bot.history import JobRecord, OutputRecord
from bot.jobs import Action, Event, Origin, Request, Status
from bot.models import parse_models
from bot.requests import Defaults, parse_request
from bot.settings import Limits

MODELS = parse_models('[models.fast]\nkind = "diffusers-img2img"\nstrength = 0.5\n')


def record(request: Request, **changes: object) -> JobRecord:
    output = OutputRecord("3f9a0c1b2d4e", 0, 43, Path("x.png"), "image/png", 64, 64)
    made = JobRecord(
        id="3f9a0c1b2d4e",
        user_id=1,
        action=Action.remix,
        request=request,
        origin=Origin("telegram", "1", "1", user_name="Ann"),
        group="classic",
        status=Status.done,
        parent_job=None,
        parent_output=None,
        created_at=time.time(),
        started_at=100.0,
        finished_at=104.2,
        error="",
        engine="classic",
        note="",
        status_message="",
        outputs=(output,),
    )
    return replace(made, **changes)  # type: ignore[arg-type]


def request(text: str, limits: Limits = Limits()) -> Request:
    return parse_request(text, defaults=Defaults(), limits=limits, models=MODELS)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.2, "1 s"), (4.2, "4 s"), (59, "59 s"), (90, "2 min"), (3599, "60 min"), (5400, "1.5 h")]
)
def test_durations(seconds: float, text: str):
    assert presenter.duration(seconds) == text


def test_queued_lines_show_the_position_and_the_eta_when_known():
    assert presenter.queued(3) == "⏳ Queued — position 3"
    assert presenter.queued(3, 125.0) == "⏳ Queued — position 3 · ready in about 2 min"
    assert presenter.queued(0, 12.0) == "⏳ Queued", "no position, no promise"
    event = Event("3f9a0c1b2d4e", Status.queued, position=2, eta_seconds=40)
    assert presenter.progress(event) == "⏳ Queued — position 2 · ready in about 40 s"
    assert presenter.progress(Event("j", Status.running, step=2, total=5)) == "🎨 Rendering 40%"
    assert presenter.progress(Event("j", Status.running)) == "🎨 Starting…"


def test_outcomes():
    done = record(request("a cat"))
    assert presenter.outcome(done) == "✅ Done in 4 s"
    failed = replace(done, status=Status.failed, error="The model\nran out of memory.")
    assert presenter.outcome(failed) == "⚠️ The model ran out of memory.", "user text stays on one line"
    assert presenter.outcome(replace(done, status=Status.cancelled)) == "✖️ Cancelled"


def test_one_label_per_button_for_every_face():
    assert set(presenter.LABELS) == set(Button)
    assert str(presenter.LABELS[Button.varystrong]) == "🌀 Strong vary"
    assert len({label.text for label in presenter.LABELS.values()}) == len(Button)


def test_info_has_every_setting_and_the_line_that_repeats_it():
    job = record(request("a harbor --model fast --seed 42 --steps 30 --cfg 6 --scale 4 --no fog"))
    text = presenter.info(job, presenter.Plain(), 4096, repeat="/remix ")
    assert text.splitlines()[0] == "Job 3f9a0c1b2d4e · remix · ✅ done"
    assert "Prompt: a harbor" in text and "Negative: fog" in text
    assert "Settings: model fast · strength 0.5 · seed 42 · steps 30 · cfg 6 · scale 4" in text
    assert "Requested by: Ann" in text
    repeat = text.split("Repeat: ", 1)[1]
    assert repeat.startswith("/remix ") and request(repeat.removeprefix("/remix ")) == job.request


@pytest.mark.parametrize("limit", [4096, 2000, 700])
def test_info_never_exceeds_the_limit_and_clips_the_prompt_first(limit: int):
    job = record(request(f'"{"a very long prompt " * 52}" --no {"blurry and dark " * 62}'))
    text = presenter.info(job, presenter.Plain(), limit, repeat="/remix ")
    assert len(text) <= limit
    prompt_line = next(line for line in text.splitlines() if line.startswith("Prompt: "))
    assert prompt_line.endswith("…"), "clipped with an ellipsis"
    assert "Requested by: Ann" in text and text.startswith("Job 3f9a0c1b2d4e")


def test_a_short_info_is_not_clipped():
    job = record(request("a cat"))
    assert "…" not in presenter.info(job, presenter.Plain(), 4096)


def test_history_lines():
    job = record(request("a watercolor\ncat " + "x" * 80))
    line = presenter.history_line(2, job, presenter.Plain(), when="today")
    assert line.startswith("2. ✅ 3f9a0c1b2d4e remix · classic · a watercolor cat xxx")
    assert line.endswith("… · 1 image · today") and "\n" not in line
    assert presenter.history_line(1, replace(job, outputs=()), presenter.Plain()).endswith("…")


def test_every_action_has_a_title():
    from bot.presenter import TITLES

    assert set(TITLES) == set(Action)
