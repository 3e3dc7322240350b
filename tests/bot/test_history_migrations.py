"""Versioned migrations: a database made by the first schema moves to the latest and keeps its rows."""

from __future__ import annotations

import json
import sqlite3
import time

from bot.history import MIGRATIONS, History
from bot.jobs import Action, Job, Origin, Request, new_job_id

ALICE = Origin(platform="telegram", user_id="1", chat_id="10", user_name="alice")


def make_v1_database(path) -> None:
    """What version 1 of remixbot left behind: its schema, a user, a finished job and its output."""
    path.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path / "remixbot.sqlite3") as db:
        db.executescript(MIGRATIONS[0])
        db.execute("PRAGMA user_version = 1")
        db.execute(
            "INSERT INTO users (platform, platform_user_id, name, created_at) VALUES ('telegram', '1', 'alice', 1.0)"
        )
        request = {"prompt": "harbor", "model": "classic", "strength": 0.5, "seed": 7, "compare": []}
        db.execute(
            "INSERT INTO jobs (id, user_id, action, request, origin, queue_group, status, created_at,"
            " finished_at, engine) VALUES ('0123456789ab', 1, 'remix', ?, ?, 'classic', 'done', 2.0,"
            " 3.0, 'classic')",
            (json.dumps(request), json.dumps({"platform": "telegram", "user_id": "1"})),
        )
        db.execute(
            "INSERT INTO outputs (job_id, idx, seed, path, media_type, width, height) VALUES "
            "('0123456789ab', 0, 7, '/data/outputs/0123456789ab-0.png', 'image/png', 600, 400)"
        )


async def test_a_v1_database_migrates_to_the_latest_version_and_keeps_its_rows(tmp_path):
    make_v1_database(tmp_path)
    history = await History.open(tmp_path)
    try:
        assert await history.schema_version() == len(MIGRATIONS) >= 2
        (user,) = await history.users()
        assert (user.platform, user.name) == ("telegram", "alice")
        old = await history.job("0123456789ab")
        assert old.request.prompt == "harbor" and old.request.motion is None  # fields added later: defaults
        assert old.compare_of is None and old.engine == "classic"
        assert [(o.index, o.width, o.path.name) for o in old.outputs] == [(0, 600, "0123456789ab-0.png")]

        first = Job(
            id=new_job_id(),
            action=Action.remix,
            image=b"png",
            origin=ALICE,
            created_at=time.time(),
            request=Request(prompt="x", model="classic", strength=0.5, compare=("fast",)),
        )
        second = Job(
            id=new_job_id(),
            action=Action.remix,
            image=b"png",
            origin=ALICE,
            request=Request(prompt="x", model="fast", strength=0.5, compare=("fast",)),
        )
        await history.add_job(first, user.id, compare_of=first.id)
        await history.add_job(second, user.id, compare_of=first.id)
        assert [r.id for r in await history.compared(first.id)] == [first.id, second.id]
        assert (await history.job(second.id)).compare_of == first.id
        assert await history.claim_compare_sheet(first.id) is True
        assert await history.claim_compare_sheet(first.id) is False  # handed out once
    finally:
        await history.close()
