import sqlite3

import pytest

from bot.history import MIGRATIONS, History
from bot.jobs import Action, Job, Origin, Output, Request, Result, Status, new_job_id

ALICE = Origin(platform="telegram", user_id="1", chat_id="10", user_name="alice")
BOB = Origin(platform="discord", user_id="1", chat_id="20", user_name="bob")


def make_job(origin=ALICE, parent=None, references=()) -> Job:
    return Job(
        id=new_job_id(),
        action=Action.remix if parent is None else Action.reroll,
        request=Request(prompt="harbor", model="classic", strength=0.5, seed=7),
        image=b"source-bytes",
        origin=origin,
        references=references,
        parent_job=parent,
    )


@pytest.fixture
async def history(tmp_path):
    store = await History.open(tmp_path / "data")
    yield store
    await store.close()


async def test_a_new_database_is_at_the_latest_schema_version(history):
    assert await history.schema_version() == len(MIGRATIONS)


async def test_opening_again_does_not_migrate_twice(tmp_path):
    first = await History.open(tmp_path)
    await first.user(ALICE)
    await first.close()
    again = await History.open(tmp_path)
    assert await again.schema_version() == len(MIGRATIONS)
    assert len(await again.users()) == 1
    await again.close()


async def test_users_are_per_platform_and_keep_their_settings(history):
    alice = await history.user(ALICE)
    bob = await history.user(BOB)  # same user id, other platform: another person
    assert alice.id != bob.id
    await history.save_settings(alice.id, {"model": "fast", "strength": 0.3})
    again = await history.user(Origin(platform="telegram", user_id="1"))  # no name: keeps the old one
    assert again.id == alice.id and again.name == "alice" and again.settings["model"] == "fast"


async def test_a_job_keeps_its_images_as_files_named_by_id(history):
    user = await history.user(ALICE)
    job = make_job(references=(b"ref-a", b"ref-b"))
    await history.add_job(job, user.id)
    assert history.source_path(job.id).read_bytes() == b"source-bytes"
    loaded = await history.load_job(job.id)
    assert loaded == job


async def test_finish_stores_outputs_once(history):
    user = await history.user(ALICE)
    job = make_job()
    await history.add_job(job, user.id)
    assert await history.mark_running(job.id)
    result = Result(
        job_id=job.id,
        status=Status.done,
        engine="classic",
        outputs=(Output(0, 7, b"png0", width=8, height=8), Output(1, 8, b"png1", width=8, height=8)),
    )
    assert await history.finish(result) is True
    assert await history.finish(result) is False  # a duplicate completion is not delivered again
    record = await history.job(job.id)
    assert record.status is Status.done and record.engine == "classic" and record.started_at
    assert [(o.index, o.seed, o.path.read_bytes()) for o in record.outputs] == [(0, 7, b"png0"), (1, 8, b"png1")]
    assert all(o.path.name.startswith(job.id) for o in record.outputs)


async def test_cancelled_jobs_do_not_take_a_late_result(history):
    user = await history.user(ALICE)
    job = make_job()
    await history.add_job(job, user.id)
    assert await history.cancel(job.id)
    assert not await history.finish(Result(job.id, Status.done, outputs=(Output(0, 1, b"x"),)))
    assert (await history.job(job.id)).status is Status.cancelled


async def test_lineage_and_unfinished_and_counts(history):
    user = await history.user(ALICE)
    first = make_job()
    await history.add_job(first, user.id)
    await history.finish(Result(first.id, Status.done))
    second = make_job(parent=first.id)
    await history.add_job(second, user.id)
    third = make_job(parent=second.id)
    await history.add_job(third, user.id)
    await history.mark_running(third.id)
    assert [r.id for r in await history.lineage(third.id)] == [third.id, second.id, first.id]
    assert await history.unfinished() == [second.id, third.id]
    assert await history.count_jobs(user.id, Status.queued, Status.running) == 2
    assert await history.count_jobs(user.id) == 3
    assert await history.requeue(third.id)
    assert (await history.job(third.id)).status is Status.queued


async def test_history_is_private_and_paged(history):
    alice, bob = await history.user(ALICE), await history.user(BOB)
    mine = [make_job() for _ in range(7)]
    for job in mine:
        await history.add_job(job, alice.id)
    await history.add_job(make_job(origin=BOB), bob.id)
    page0 = await history.jobs_of(alice.id, limit=5)
    page1 = await history.jobs_of(alice.id, limit=5, offset=5)
    assert [r.id for r in page0 + page1] == [j.id for j in reversed(mine)]
    assert all(r.user_id == alice.id for r in page0 + page1)


async def test_the_file_is_plain_sqlite(history):
    user = await history.user(ALICE)
    await history.add_job(make_job(), user.id)
    with sqlite3.connect(history.data_dir / "remixbot.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM jobs").fetchone() == (1,)
