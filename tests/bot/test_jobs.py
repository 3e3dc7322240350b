import json
import pickle
from dataclasses import replace

from bot.jobs import Action, Event, Job, Origin, Output, Request, Result, Status, new_job_id


def make_job() -> Job:
    return Job(
        id=new_job_id(),
        action=Action.vary,
        request=Request(prompt="p", model="classic", strength=0.4, seed=3, compare=("fast",)),
        image=b"\x89PNG...",
        origin=Origin(platform="telegram", user_id="42", chat_id="-100"),
        references=(b"a", b"b"),
        parent_job="0123456789ab",
        parent_output=1,
    )


def test_job_crosses_the_queue_as_plain_data_and_comes_back_equal():
    job = make_job()
    data = job.to_data()
    assert data["action"] == "vary" and data["request"]["compare"] == ["fast"]
    assert pickle.loads(pickle.dumps(data)) == data  # only builtins inside
    assert Job.from_data(data) == job


def test_result_and_event_round_trip():
    result = Result(
        job_id="abc",
        status=Status.done,
        outputs=(Output(index=0, seed=1, data=b"x", width=2, height=3),),
        engine="classic",
    )
    assert Result.from_data(result.to_data()) == result
    event = Event(job_id="abc", status=Status.running, step=2, total=4)
    assert Event.from_data(json.loads(json.dumps(event.to_data()))) == event
    assert event.percent == 50


def test_job_ids_are_short_hex_and_unique():
    ids = {new_job_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 12 and int(i, 16) >= 0 for i in ids)


def test_status_finished():
    assert {s for s in Status if s.finished} == {Status.done, Status.failed, Status.cancelled}


def test_a_verdict_crosses_the_queue_with_its_output():
    from bot.jobs import Verdict

    output = Output(index=0, seed=1, data=b"x", verdict=Verdict(flagged=True, score=0.8, label="BUTTOCKS_EXPOSED"))
    result = Result(job_id="abc", status=Status.done, outputs=(output,))
    assert Result.from_data(result.to_data()) == result
    assert Result.from_data(result.to_data()).outputs[0].verdict == output.verdict


def test_a_refused_source_and_its_mark_cross_the_queue():
    from bot.jobs import Verdict

    job = replace(make_job(), screen_source=True)
    assert Job.from_data(pickle.loads(pickle.dumps(job.to_data()))) == job
    refused = Result(job_id="abc", status=Status.failed, error="no", refused=Verdict(True, 0.9, "nsfw concept"))
    event = Event(job_id="abc", status=Status.failed, result=refused)
    assert Event.from_data(json.loads(json.dumps(event.to_data()))).result == refused
