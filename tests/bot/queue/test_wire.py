"""The wire format: what we write comes back equal; anything else read from Redis — a pickle, garbage,
the wrong types, too many bytes — is refused without being run, and no module on a path that reads
Redis imports pickle."""

from __future__ import annotations

import ast
import json
import math
import pickle
from pathlib import Path

import msgpack
import pytest

from bot.jobs import Action, Event, Job, Origin, Output, Request, Result, Status
from bot.queue.wire import (
    RUN_JOB,
    Unreadable,
    decode_event,
    decode_heartbeat,
    decode_job,
    decode_rates,
    decode_result,
    encode_event,
    encode_result,
    pack,
    pack_arq,
    redis_settings,
    unpack_arq,
)

ROOT = Path(__file__).resolve().parents[3]

JOB = Job(
    id="3f9a0c1b2d4e",
    action=Action.upscale,
    request=Request(prompt="a harbor", model="classic", strength=0.55, seed=42, compare=("fast",), size=768),
    image=b"\x89PNG\r\n\x1a\n source",
    origin=Origin(platform="discord", user_id="1", chat_id="2", guild_id="3"),
    references=(b"\x89PNG one", b"\x89PNG two"),
    parent_job="0a0b0c0d0e0f",
    parent_output=1,
)
RESULT = Result(
    job_id=JOB.id,
    status=Status.done,
    outputs=(Output(0, 42, b"\x89PNG out\x00\xff", width=64, height=48), Output(1, 43, b"mp4", "video/mp4")),
    engine="classic",
    note="a note",
    seconds=1.25,
)


class Booby:
    """A pickle that creates a file when it is unpickled: proof of whether anyone unpickled it."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.fixture
def trap(tmp_path) -> Path:
    return tmp_path / "unpickled"


def test_jobs_results_and_events_come_back_equal():
    envelope = unpack_arq(pack_arq({"t": None, "f": RUN_JOB, "a": [JOB.to_data()], "k": {}, "et": 1}))
    assert decode_job(envelope["a"][0]) == JOB
    assert decode_result(encode_result(RESULT)) == RESULT
    progress = Event(JOB.id, Status.running, step=3, total=10)
    assert decode_event(encode_event(progress)) == progress
    queued = Event(JOB.id, Status.queued, position=2, eta_seconds=12.5)
    assert decode_event(encode_event(queued)) == queued


def test_a_preview_crosses_as_bytes_and_old_json_events_are_still_read():
    jpeg = b"\xff\xd8\xff\xe0 a preview \x00\x01\xff\xd9"
    shown = Event(JOB.id, Status.running, step=2, total=10, preview=jpeg)
    payload = encode_event(shown)
    assert isinstance(payload, bytes) and jpeg in payload  # raw bytes in msgpack, no base64
    assert decode_event(payload) == shown and decode_event(payload).preview == jpeg
    old = json.dumps({"job_id": JOB.id, "status": "running", "step": 1, "total": 4})  # a worker before msgpack
    assert decode_event(old) == decode_event(old.encode()) == Event(JOB.id, Status.running, step=1, total=4)
    with pytest.raises(Unreadable, match="preview"):
        decode_event(pack({**shown.to_data(), "preview": "text, not bytes"}))


def test_a_failure_rides_in_its_event_but_outputs_never_do():
    failed = Result(JOB.id, Status.failed, error="Too big.")
    assert decode_event(encode_event(Event(JOB.id, Status.failed, result=failed))).result == failed
    assert decode_event(encode_event(Event(JOB.id, Status.done, result=RESULT))).result is None


def test_a_planted_pickle_is_refused_everywhere_without_being_unpickled(trap):
    planted = pickle.dumps({"job_id": JOB.id, "status": "done", "boom": Booby(trap)})
    assert pickle.loads(pickle.dumps(Booby(trap.with_suffix(".check")))) is None  # the trap works
    assert trap.with_suffix(".check").exists()

    with pytest.raises(Unreadable, match="not msgpack"):
        decode_result(planted)
    with pytest.raises(Unreadable, match="not msgpack"):
        decode_event(planted)
    envelope = unpack_arq(planted)
    assert envelope["f"] == RUN_JOB and envelope["a"] == [] and "not msgpack" in envelope["k"]["unreadable"]
    assert decode_heartbeat(planted) is None
    assert not trap.exists(), "something unpickled the payload"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00\xff garbage \x13",
        pack(["a", "list"]),
        pack({"job_id": JOB.id}),  # no status
        pack({**RESULT.to_data(), "status": "exploded"}),
        pack({**RESULT.to_data(), "seconds": math.nan}),
        pack({**RESULT.to_data(), "seconds": True}),
        pack({**RESULT.to_data(), "outputs": [{**RESULT.outputs[0].__dict__, "data": "text, not bytes"}]}),
        pack({**RESULT.to_data(), "outputs": "not a list"}),
        pack(RESULT.to_data()) + b"trailing",
        msgpack.packb({1: "integer keys"}),
        msgpack.packb(msgpack.ExtType(42, b"an extension")),
    ],
)
def test_results_that_are_not_ours_are_refused(payload):
    with pytest.raises(Unreadable):
        decode_result(payload)


def test_a_result_over_the_byte_cap_is_refused_before_it_is_decoded():
    payload = encode_result(RESULT)
    assert decode_result(payload, max_bytes=len(payload)) == RESULT
    with pytest.raises(Unreadable, match="over the limit"):
        decode_result(payload, max_bytes=len(payload) - 1)


@pytest.mark.parametrize(
    ("envelope", "why"),
    [
        ({"t": 1, "f": "os.system", "a": [JOB.to_data()], "k": {}, "et": 1}, "not a call of run_job"),
        ({"t": 1, "f": RUN_JOB, "a": [JOB.to_data()], "k": {"unreadable": ""}, "et": 1}, "not a call of run_job"),
        ({"t": 1, "f": RUN_JOB, "a": [JOB.to_data(), JOB.to_data()], "k": {}, "et": 1}, "not one job's data"),
        ({"f": RUN_JOB, "a": [JOB.to_data()]}, "not an arq job"),
    ],
)
def test_arq_payloads_that_are_not_one_of_our_jobs_become_a_refusal_for_run_job(envelope, why):
    refused = unpack_arq(msgpack.packb(envelope))
    assert refused["f"] == RUN_JOB and refused["a"] == [] and refused["k"] == {"unreadable": why}


@pytest.mark.parametrize(
    "data",
    [
        {**JOB.to_data(), "image": "not bytes"},
        {**JOB.to_data(), "action": "format_disk"},
        {**JOB.to_data(), "request": {**JOB.to_data()["request"], "strength": math.inf}},
        {**JOB.to_data(), "references": [b"ok", 3]},
        {key: value for key, value in JOB.to_data().items() if key != "origin"},
    ],
)
def test_job_data_with_the_wrong_shape_is_refused(data):
    with pytest.raises(Unreadable):
        decode_job(data)


def test_events_heartbeats_and_rates_that_are_not_ours_are_dropped():
    for text in ("[1, 2]", '{"job_id": "x", "status": "queued", "position": "first"}', "{"):
        with pytest.raises(Unreadable):
            decode_event(text)
    assert decode_heartbeat(b'{"groups": "classic"}') is None
    assert decode_heartbeat(b'{"groups": ["classic"], "gpu": {"device": "cuda:0"}}') is None
    assert decode_heartbeat(b'{"groups": ["classic"], "availability": {"classic": null}}') is not None
    assert decode_rates({b"classic": b"0.5", b"fast": b"nan", b"evil": b"cos(0)"}) == {"classic": 0.5}


def test_redis_urls_carry_tls_and_percent_encoded_passwords():
    plain = redis_settings("redis://127.0.0.1:6379/12")
    assert (plain.host, plain.port, plain.database, plain.password, plain.ssl) == ("127.0.0.1", 6379, 12, None, False)
    secure = redis_settings("rediss://:p%40ss%2Fw0rd@queue.example:6380/0?ssl_ca_certs=/etc/remixbot/ca.pem")
    assert secure.password == "p@ss/w0rd" and secure.ssl and secure.ssl_check_hostname
    assert secure.ssl_ca_certs == "/etc/remixbot/ca.pem" and secure.port == 6380
    acl = redis_settings("redis://remix%2Dbot:s3cret@queue.example/1")
    assert (acl.username, acl.password, acl.database) == ("remix-bot", "s3cret", 1)


def test_no_module_that_reads_redis_imports_pickle():
    readers = [*(ROOT / "bot").rglob("*.py"), ROOT / "engine" / "worker.py", ROOT / "adapters" / "cli.py"]
    for path in readers:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(name.split(".")[0] in ("pickle", "dill", "cloudpickle") for name in names), path
