"""bot.status: the one status tracker. A face's Screen here is a chat kept in memory (what a person
would see, with the time of every change); the tracker, the presenter and the history are real."""

from __future__ import annotations

import asyncio
import io
import time
from dataclasses import dataclass, field, replace

import pytest
from PIL import Image

from bot.history import History, JobRecord
from bot.jobs import Action, Event, Job, Origin, Request, Result, Status
from bot.status import Place, StatusTracker

ALICE = Origin(platform="telegram", user_id="1", chat_id="-100", user_name="Alice", message_id="7")


def jpeg(shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (shade, 100, 50)).save(out, format="JPEG")
    return out.getvalue()


@dataclass
class Message:
    lines: list[str] = field(default_factory=list)  # what it showed, in order
    pictures: list[bytes] = field(default_factory=list)  # previews it showed, in order
    at: list[float] = field(default_factory=list)  # when it changed
    result: str = ""


@dataclass
class Chat:
    """A face that keeps its messages in memory. ``moves``: a preview moves the message (as on
    Telegram, where a text message can't take a photo); ``fail_send``: posting fails."""

    moves: bool = False
    fail_send: bool = False
    messages: dict[Place, Message] = field(default_factory=dict)
    finished: list[tuple[Place | None, str, str]] = field(default_factory=list)  # (place, job, line)
    slow: float = 0.0  # seconds each edit takes
    next_id: int = 100

    def new_message(self) -> Place:
        self.next_id += 1
        place = Place(-100, self.next_id)
        self.messages[place] = Message()
        return place

    def _change(self, place: Place, line: str, picture: bytes = b"") -> None:
        message = self.messages[place]
        message.lines.append(line)
        message.at.append(time.monotonic())
        if picture:
            message.pictures.append(picture)

    async def send(self, job: Job, line: str, where: str) -> Place:
        await asyncio.sleep(0)
        if self.fail_send:
            raise ConnectionError("no posting here")
        place = self.new_message()
        self._change(place, f"{where}: {line}")
        return place

    async def edit(self, place: Place, record: JobRecord, line: str) -> None:
        await asyncio.sleep(self.slow)
        self._change(place, line)

    async def preview(self, place: Place, record: JobRecord, line: str, jpeg: bytes) -> Place:
        await asyncio.sleep(self.slow)
        if self.moves and not self.messages[place].pictures:
            place = self.new_message()
        self._change(place, line, jpeg)
        return place

    async def finish(self, place: Place | None, record: JobRecord, line: str) -> Place | None:
        self.finished.append((place, record.id, line))
        if place is not None:
            self.messages[place].result = line
        return None


@pytest.fixture
async def history(tmp_path):
    store = await History.open(tmp_path)
    yield store
    await store.close()


async def new_job(history: History, job_id: str = "3f9a0c1b2d4e") -> Job:
    job = Job(job_id, Action.remix, Request("a harbor", "classic", 0.6, seed=1), b"png", ALICE)
    await history.add_job(job, (await history.user(ALICE)).id)
    return job


async def record_of(history: History, job: Job, status: Status = Status.running) -> JobRecord:
    found = await history.job(job.id)
    assert found is not None
    return replace(found, status=status)


async def until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def finished(record: JobRecord) -> tuple[JobRecord, Event]:
    done = replace(record, status=Status.done, started_at=10.0, finished_at=14.0)
    return done, Event(record.id, Status.done, result=Result(record.id, Status.done))


async def test_the_status_message_is_posted_stored_and_moves_forward_to_the_result(history):
    chat = Chat()
    tracker = StatusTracker(chat, history, interval=0.0)
    job = await new_job(history)
    record = await record_of(history, job)
    # events can come before the message is posted: they wait for it
    await tracker.on_event(record, Event(job.id, Status.queued, position=2, eta_seconds=125.0))
    place = await tracker.post(job, 3, "classic")
    assert (await history.job(job.id)).status_message == f"-100:{place.message}", "findable after a restart"
    await tracker.on_event(record, Event(job.id, Status.running, step=1, total=4))
    await until(lambda: chat.messages[place].lines[-1] == "🎨 Rendering 25%")
    await tracker.on_event(record, Event(job.id, Status.running, step=2, total=4))
    await until(lambda: chat.messages[place].lines[-1] == "🎨 Rendering 50%")
    await tracker.on_event(*finished(record))
    await tracker.settled()
    lines = chat.messages[place].lines
    assert lines[0] == "classic: ⏳ Queued — position 3"
    assert lines[1] == "⏳ Queued — position 2 · ready in about 2 min", "the ETA shows on every face"
    assert lines[2:] == ["🎨 Rendering 25%", "🎨 Rendering 50%"]
    assert chat.finished == [(place, job.id, "✅ Done in 4 s")]


async def test_a_burst_of_progress_is_one_edit_with_the_newest_state_after_the_interval(history):
    chat = Chat()
    tracker = StatusTracker(chat, history, interval=0.3)
    job = await new_job(history)
    record = await record_of(history, job)
    place = await tracker.post(job, 1, "classic")
    for step in range(1, 10):
        await tracker.on_event(record, Event(job.id, Status.running, step=step, total=10))
    await until(lambda: chat.messages[place].lines[-1] == "🎨 Rendering 90%")
    await asyncio.sleep(0.4)
    message = chat.messages[place]
    assert message.lines == ["classic: ⏳ Queued — position 1", "🎨 Rendering 90%"], "nine events, one edit"
    assert message.at[1] - message.at[0] >= 0.3 * 0.95, "not sooner than the interval after the post"
    await tracker.on_event(*finished(record))
    await tracker.settled()
    assert chat.finished[0][2].startswith("✅"), "the final state is never held back"


async def test_an_older_event_never_shows_after_a_newer_one(history):
    chat = Chat()
    tracker = StatusTracker(chat, history, interval=0.0)
    job = await new_job(history)
    record = await record_of(history, job)
    place = await tracker.post(job, 1, "classic")
    await tracker.on_event(record, Event(job.id, Status.running, step=4, total=10))
    await until(lambda: chat.messages[place].lines[-1] == "🎨 Rendering 40%")
    await tracker.on_event(record, Event(job.id, Status.running, step=3, total=10))  # late
    await tracker.on_event(record, Event(job.id, Status.queued, position=1))  # late
    await tracker.on_event(*finished(record))
    await tracker.on_event(record, Event(job.id, Status.running, step=9, total=10))  # after the end
    await tracker.settled()
    await asyncio.sleep(0.05)
    assert chat.messages[place].lines == ["classic: ⏳ Queued — position 1", "🎨 Rendering 40%"]
    assert len(chat.finished) == 1 and chat.messages[place].result.startswith("✅")


async def test_a_final_event_waits_for_the_edit_under_way_then_replaces_it(history):
    chat = Chat(slow=0.2)
    tracker = StatusTracker(chat, history, interval=0.0)
    job = await new_job(history)
    record = await record_of(history, job)
    place = await tracker.post(job, 1, "classic")
    await tracker.on_event(record, Event(job.id, Status.running, step=1, total=2))
    await asyncio.sleep(0.05)  # the edit is under way
    await tracker.on_event(*finished(record))
    await tracker.settled()
    assert chat.messages[place].lines[-1] == "🎨 Rendering 50%", "the edit under way was not cut off"
    assert chat.finished == [(place, job.id, "✅ Done in 4 s")]


async def test_previews_are_throttled_each_shows_the_newest_and_the_result_replaces_them(history):
    chat = Chat()
    tracker = StatusTracker(chat, history, interval=0.05, preview_interval=0.4)
    job = await new_job(history)
    record = await record_of(history, job)
    place = await tracker.post(job, 1, "classic")
    started = time.monotonic()
    for step in range(1, 21):  # a preview at every step, every 50 ms: far more than may be shown
        await tracker.on_event(record, Event(job.id, Status.running, step=step, total=20, preview=jpeg(step * 10)))
        await asyncio.sleep(0.05)
    took = time.monotonic() - started
    await until(lambda: chat.messages[place].pictures[-1] == jpeg(200))
    message = chat.messages[place]
    assert 2 <= len(message.pictures) <= took / 0.4 + 2, "at most one preview per preview interval"
    shown_at = [at for at, line in zip(message.at[1:], message.lines[1:], strict=True) if line]
    assert all(b - a >= 0.05 * 0.9 for a, b in zip(shown_at, shown_at[1:], strict=False)), "edits spaced"
    assert message.pictures[-1] == jpeg(200), "the newest preview shows in the end"
    assert message.lines[-1] == "🎨 Rendering 100%"
    await tracker.on_event(*finished(record))
    await tracker.settled()
    assert chat.finished == [(place, job.id, "✅ Done in 4 s")], "the result goes where the preview is"


async def test_progress_keeps_its_own_pace_while_a_preview_waits_for_its_turn(history):
    chat = Chat()
    tracker = StatusTracker(chat, history, interval=0.1, preview_interval=2.0)
    job = await new_job(history)
    record = await record_of(history, job)
    place = await tracker.post(job, 1, "classic")
    await tracker.on_event(record, Event(job.id, Status.running, step=1, total=10, preview=jpeg(1)))
    await until(lambda: chat.messages[place].pictures == [jpeg(1)])
    # a new preview with nothing new to say: it waits its turn (2 s) ...
    await tracker.on_event(record, Event(job.id, Status.running, step=1, total=10, preview=jpeg(2)))
    await asyncio.sleep(0.02)
    # ... while new progress is shown at the edit pace, not held back with it
    await tracker.on_event(record, Event(job.id, Status.running, step=2, total=10))
    await until(lambda: chat.messages[place].lines[-1] == "🎨 Rendering 20%", timeout=1.0)
    assert chat.messages[place].pictures == [jpeg(1)], "the preview still waits"
    await tracker.on_event(*finished(record))
    await tracker.settled()


async def test_a_face_that_moves_its_message_for_a_preview_is_followed_and_the_move_stored(history):
    chat = Chat(moves=True)
    tracker = StatusTracker(chat, history, interval=0.0, preview_interval=0.0)
    job = await new_job(history)
    record = await record_of(history, job)
    text = await tracker.post(job, 1, "classic")
    await tracker.on_event(record, Event(job.id, Status.running, step=1, total=4, preview=jpeg(1)))
    await until(lambda: len(chat.messages) == 2)
    photo = next(place for place in chat.messages if place != text)
    for _ in range(200):  # the tracker stores the new place right after the face moved it
        if (await history.job(job.id)).status_message == str(photo):
            break
        await asyncio.sleep(0.01)
    assert (await history.job(job.id)).status_message == str(photo), "a restart finds the photo"
    assert chat.messages[photo].pictures == [jpeg(1)] and chat.messages[photo].lines == ["🎨 Rendering 25%"]
    await tracker.on_event(record, Event(job.id, Status.running, step=2, total=4, preview=jpeg(2)))
    await until(lambda: len(chat.messages[photo].pictures) == 2)
    assert len(chat.messages) == 2, "moved once, then edited in place"
    await tracker.on_event(*finished(record))
    await tracker.settled()
    assert chat.finished == [(photo, job.id, "✅ Done in 4 s")]


async def test_a_recovered_job_edits_the_message_its_history_names(history):
    chat = Chat()
    posted = chat.new_message()
    job = await new_job(history)
    await history.set_status_message(job.id, str(posted))
    tracker = StatusTracker(chat, history, interval=0.0, patience=30.0)  # a new process: nothing posted
    record = await record_of(history, job)
    await tracker.on_event(record, Event(job.id, Status.running, step=1, total=2))
    await until(lambda: chat.messages[posted].lines == ["🎨 Rendering 50%"])
    await tracker.on_event(*finished(record))
    await tracker.settled()
    assert chat.finished == [(posted, job.id, "✅ Done in 4 s")]


async def test_when_posting_fails_the_end_still_comes_and_an_abandoned_job_is_dropped(history):
    chat = Chat(fail_send=True)
    tracker = StatusTracker(chat, history, interval=0.0, patience=30.0)
    job, other = await new_job(history), await new_job(history, "0123456789ab")
    with pytest.raises(ConnectionError):
        await tracker.post(job, 1, "classic")
    record = await record_of(history, job)
    await tracker.on_event(record, Event(job.id, Status.running, step=1, total=2))
    await tracker.on_event(*finished(record))
    await asyncio.wait_for(tracker.settled(), 2)
    assert chat.finished == [(None, job.id, "✅ Done in 4 s")], "no message to edit, but the result goes out"

    tracker.abandon(other.id)  # the face gave the job up (and cancels it)
    await tracker.on_event(*finished(await record_of(history, other)))
    third = await new_job(history, "ba9876543210")
    with pytest.raises(ConnectionError):  # as on Discord: the post fails, so the job is given up
        await tracker.post(third, 1, "classic")
    tracker.abandon(third.id)
    await tracker.on_event(*finished(await record_of(history, third)))
    await asyncio.wait_for(tracker.settled(), 2)
    assert [job_id for _, job_id, _ in chat.finished] == [job.id]


def test_places_read_back_as_the_history_keeps_them():
    assert Place.parse("-1001000000001:42") == Place(-1001000000001, 42)
    assert str(Place(5, 6)) == "5:6" and Place.parse(str(Place(5, 6))) == Place(5, 6)
    assert Place.parse("") is None and Place.parse("garbage") is None and Place.parse("1:x") is None
