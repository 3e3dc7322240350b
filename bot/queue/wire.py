"""What crosses Redis between the bot (``ArqQueue``) and the workers (``engine.worker``), and where.

Key and channel names, the Lua scripts, and the codecs. Nothing read from Redis can run code: arq
job payloads, results and events are msgpack (bytes travel natively, a running job's preview JPEG
among them; nothing but plain data comes out), heartbeats JSON. Every decoder checks the shape and
the types of what it read before it builds a dataclass, so a foreign or malformed payload is
refused (``Unreadable``) — it fails that one job with a logged reason, never the worker or the bot.

arq's own keys (the job, its claim, its retries) are named by ``arq.constants``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import json
import logging
import math
import time
import types
import typing
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import msgpack
from arq.connections import RedisSettings
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix, retry_key_prefix
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from bot.fairness import update_rate
from bot.jobs import Event, Job, Result
from bot.models import ModelEntry

log = logging.getLogger(__name__)

D = TypeVar("D")

RUN_JOB = "run_job"  # the one arq function: engine.worker.run_job(ctx, job data)
RATES_KEY = "remixbot:rates"  # hash: model → moving average of seconds per job
FAIR_TTL = 24 * 3600  # fair-share state of a queue nobody used for this long is forgotten
WORKER_PREFIX = "remixbot:worker:"  # + worker id → JSON heartbeat with a TTL
OFF_LOOP_BYTES = 256 * 1024  # results larger than this are decoded on a thread


class Unreadable(ValueError):
    """A payload read from Redis that is not what remixbot writes there; ``str()`` says why (for logs)."""


# names ---------------------------------------------------------------------------------------


def events_channel(database: int) -> str:
    """Progress and completion, worker → bots. Pub/sub spans a Redis server's databases: one per database."""
    return f"remixbot:events:{database}"


def cancel_channel(database: int) -> str:
    """Cancel requests for running jobs, bots → workers."""
    return f"remixbot:cancel:{database}"


def queued_channel(database: int) -> str:
    """A job was queued in a group (the message): workers of that group with room take it at once."""
    return f"remixbot:queued:{database}"


def queue_name(group: str) -> str:
    return f"remixbot:queue:{group}"


def result_key(job_id: str) -> str:
    """A finished job's Result (msgpack), from the worker until the bot has stored it."""
    return f"remixbot:result:{job_id}"


def cancel_key(job_id: str) -> str:
    return f"remixbot:cancel:{job_id}"


def fair_key(group: str, server: str = "") -> str:
    """The queue's clock (a hash with field "clock"), or a server's users' finish tags (user → tag)."""
    return f"remixbot:fair:{group}" + (f":users:{server}" if server else "")


def in_progress_key(job_id: str) -> str:
    """arq's claim on a running job; a worker renews it as a short lease (engine.worker)."""
    return in_progress_key_prefix + job_id


def arq_job_key(job_id: str) -> str:
    """arq's copy of a queued job (its payload, msgpack)."""
    return job_key_prefix + job_id


def leftovers(job_id: str) -> list[str]:
    """Every key a finished job may have left in Redis, for deleting once the bot has stored it."""
    return [result_key(job_id), cancel_key(job_id), arq_job_key(job_id), result_key_prefix + job_id]


def arq_keys(job_id: str) -> list[str]:
    """arq's keys of a job that is neither queued nor running, cleared before it is queued again."""
    return [arq_job_key(job_id), result_key_prefix + job_id, retry_key_prefix + job_id]


# A queue's jobs in order, split into those a worker has claimed and those still waiting.
ORDER_SCRIPT = """
local running, waiting = {}, {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('EXISTS', ARGV[1] .. id) == 1 then
    table.insert(running, id)
  else
    table.insert(waiting, id)
  end
end
return {running, waiting}
"""
ORDER_SCRIPT_ARGS = [in_progress_key_prefix]


# A queue's fair-share state in one round trip: its clock, its server's users' finish tags, its head.
FAIR_STATE_SCRIPT = """
local head = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
return {redis.call('HGET', KEYS[1], 'clock'), redis.call('HGETALL', KEYS[2]), head[2] or false}
"""


# codecs --------------------------------------------------------------------------------------


def pack(data: Any) -> bytes:
    """Plain data (dicts, lists, str, bytes, numbers, None) as msgpack."""
    return typing.cast(bytes, msgpack.packb(data, use_bin_type=True))


def unpack(payload: object, *, max_bytes: int | None = None) -> Any:
    """msgpack back to plain data. Raises Unreadable for anything else: a pickle, garbage, too much."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise Unreadable(f"expected bytes, got {type(payload).__name__}")
    if max_bytes is not None and len(payload) > max_bytes:
        raise Unreadable(f"{len(payload)} bytes, over the limit of {max_bytes}")
    try:
        # raw=False: str stays str and bytes stay bytes; map keys must be str or bytes
        return msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as error:  # msgpack raises several kinds (ExtraData, FormatError, ValueError …)
        raise Unreadable(f"not msgpack ({type(error).__name__})") from None


def _arq_default(value: object) -> object:
    """arq stores an exception as a failed job's result (we keep none): its text, never the object."""
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    raise TypeError(f"{type(value).__name__} can't cross Redis")


def pack_arq(data: dict[str, Any]) -> bytes:
    """arq's ``job_serializer``: its job envelope (function, args, try, enqueue time) as msgpack."""
    return typing.cast(bytes, msgpack.packb(data, use_bin_type=True, default=_arq_default))


def unpack_arq(payload: bytes) -> dict[str, Any]:
    """arq's ``job_deserializer``. Never raises: a payload that isn't one of our jobs becomes a call of
    ``run_job`` with the reason (``unreadable=…``), so the worker fails that job with a message the bot
    delivers — arq would otherwise drop the job silently and leave its user waiting."""
    try:
        envelope = unpack(payload)
        if not isinstance(envelope, dict) or not {"f", "a", "k", "t", "et"} <= envelope.keys():
            raise Unreadable("not an arq job")
        if envelope["f"] != RUN_JOB or not isinstance(envelope["k"], dict) or envelope["k"]:
            raise Unreadable(f"not a call of {RUN_JOB}")
        args = envelope["a"]
        if not (isinstance(args, list) and len(args) == 1 and isinstance(args[0], dict)):
            raise Unreadable("not one job's data")
        return envelope
    except Unreadable as error:
        now = int(time.time() * 1000)
        return {"f": RUN_JOB, "a": [], "k": {"unreadable": str(error)}, "t": None, "et": now}


def decode_job(data: object) -> Job:
    """A job's plain data (``Job.to_data``) as read from arq's payload. Raises Unreadable."""
    return checked(Job, data)


def encode_result(result: Result) -> bytes:
    return pack(result.to_data())


def decode_result(payload: object, *, max_bytes: int | None = None) -> Result:
    return checked(Result, unpack(payload, max_bytes=max_bytes))


async def read_result(redis: Redis, job_id: str, max_bytes: int) -> Result | None:
    """The stored result of a job, None when there is none. Reads at most ``max_bytes`` + 1 bytes, so a
    planted giant value costs no memory. Raises Unreadable."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.strlen(result_key(job_id))
        pipe.getrange(result_key(job_id), 0, max_bytes)
        length, head = await pipe.execute()
    if not length:
        return None
    if length > max_bytes:
        raise Unreadable(f"{length} bytes, over the limit of {max_bytes}")
    if length > OFF_LOOP_BYTES:  # megabytes of outputs: decoding them must not hold up the event loop
        return await asyncio.to_thread(decode_result, head, max_bytes=max_bytes)
    return decode_result(head, max_bytes=max_bytes)


MAX_EVENT_BYTES = 1 << 20  # an event is a few bytes, or a preview JPEG of a few KB


def encode_event(event: Event) -> bytes:
    """Events cross pub/sub as msgpack (a preview's JPEG as bytes). A result goes along only when it
    has no outputs (a failure, a cancel: a few bytes); outputs travel under ``result_key``."""
    data = event.to_data()
    if event.result is not None and event.result.outputs:
        data["result"] = None
    return pack(data)


def decode_event(payload: object) -> Event:
    """An event as ``encode_event`` wrote it, or as JSON text (what workers sent before msgpack, so a
    worker not yet upgraded is still heard; JSON carries no preview). Raises Unreadable."""
    if isinstance(payload, str) or (isinstance(payload, bytes | bytearray) and payload[:1] == b"{"):
        try:
            data = json.loads(payload)
        except (ValueError, RecursionError):
            raise Unreadable("not JSON") from None
    else:
        data = unpack(payload, max_bytes=MAX_EVENT_BYTES)
    return checked(Event, data)


def checked(cls: type[D], data: object) -> D:
    """``cls.from_data(data)`` for one of bot.jobs' dataclasses, once every field present has the type
    the dataclass declares (numbers finite, enums known, nested dataclasses and tuples checked too) and
    every field without a default is there. Raises Unreadable."""
    problem = _problem(cls, data)
    if problem:
        raise Unreadable(f"invalid {cls.__name__}: {problem}")
    return typing.cast(D, getattr(cls, "from_data")(data))  # noqa: B009 - every class here has it


def _problem(cls: type, data: object) -> str:
    if not isinstance(data, dict):
        return f"expected a map, got {type(data).__name__}"
    hints = _hints(cls)
    for field in dataclasses.fields(cls):
        if field.name not in data:
            required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
            if required:
                return f"{field.name} is missing"
            continue
        problem = _mismatch(hints[field.name], data[field.name])
        if problem:
            return f"{field.name}: {problem}"
    return ""


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The dataclass's field types, resolved once (``get_type_hints`` evaluates every annotation)."""
    return typing.get_type_hints(cls)


def _mismatch(hint: Any, value: object) -> str:
    """Why ``value`` (plain data) doesn't fit the type ``hint``; "" when it does."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        problems = [_mismatch(option, value) for option in typing.get_args(hint)]
        return "" if "" in problems else " or ".join(problems)
    if hint is type(None):
        return "" if value is None else "expected nothing"
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return f"expected a list, got {type(value).__name__}"
        item = typing.get_args(hint)[0]
        return next((problem for problem in (_mismatch(item, each) for each in value) if problem), "")
    if dataclasses.is_dataclass(hint):
        return _problem(typing.cast(type, hint), value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "" if value in {member.value for member in hint} else f"unknown {hint.__name__} {value!r:.40}"
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return "" if ok else "expected a finite number"
    if hint is int:
        return "" if isinstance(value, int) and not isinstance(value, bool) else "expected an integer"
    if hint in (str, bytes, bool):
        return "" if isinstance(value, hint) else f"expected {hint.__name__}, got {type(value).__name__}"
    return f"no check for {hint!r}"


# heartbeats and rates ------------------------------------------------------------------------


def decode_heartbeat(value: object) -> dict[str, Any] | None:
    """A worker's heartbeat (JSON), or None (logged) when it isn't one."""
    try:
        beat = json.loads(value) if isinstance(value, str | bytes) else None
    except ValueError:
        beat = None
    ok = (
        isinstance(beat, dict)
        and isinstance(beat.get("groups", []), list)
        and all(isinstance(group, str) for group in beat.get("groups", []))
        and isinstance(beat.get("availability", {}), dict)
        and all(reason is None or isinstance(reason, str) for reason in beat.get("availability", {}).values())
        and (beat.get("gpu") is None or _gpu_fits(beat["gpu"]))
        and all(isinstance(beat.get(name, 0), int | float) for name in ("rss_bytes", "at"))
        and isinstance(beat.get("running", []), list)
    )
    if not ok:
        log.warning("ignoring a heartbeat that isn't one (%d bytes)", len(value) if isinstance(value, bytes) else -1)
        return None
    return typing.cast(dict[str, Any], beat)


def _gpu_fits(gpu: object) -> bool:
    numbers = ("allocated", "reserved", "free", "total")
    return (
        isinstance(gpu, dict)
        and all(isinstance(gpu.get(name), str) for name in ("device", "name"))
        and all(isinstance(gpu.get(name), int | float) for name in numbers)
    )


def merge_heartbeats(beats: list[dict[str, Any]], models: Iterable[ModelEntry]) -> dict[str, str | None]:
    """Model availability from live workers' heartbeats: ready where any worker of its group has it."""
    merged: dict[str, str | None] = {}
    for entry in models:
        serving = [beat for beat in beats if entry.queue_group in beat.get("groups", [])]
        if not serving:
            merged[entry.name] = f"no worker is serving the {entry.queue_group!r} group right now"
            continue
        reasons = [beat.get("availability", {}).get(entry.name, "unknown to the worker") for beat in serving]
        merged[entry.name] = None if None in reasons else reasons[0]
    return merged


def describe_worker(beat: dict[str, Any]) -> str:
    """One line about a live worker from its heartbeat: where, on what device, how much memory."""
    gib = 1024**3
    gpu = beat.get("gpu")
    if gpu:
        device = (
            f"{gpu['device']} {gpu['name']} ({(gpu['total'] - gpu['free']) / gib:.1f} of "
            f"{gpu['total'] / gib:.1f} GiB in use)"
        )
    else:
        device = beat.get("device") or "auto"
    running = len(beat.get("running", []))
    return (
        f"{beat.get('id', '?')}: {device}, {beat.get('rss_bytes', 0) / gib:.2f} GiB RAM; "
        f"groups {', '.join(beat.get('groups', []))}; {running} job{'s' if running != 1 else ''} running"
    )


def number(value: object) -> float | None:
    """A finite number stored as text in Redis, or None when it isn't one."""
    try:
        parsed = float(value)  # type: ignore[arg-type]  # bytes, str or garbage: ValueError/TypeError
    except (TypeError, ValueError):
        return None
    return parsed if math.isfinite(parsed) else None


def decode_rates(stored: dict[bytes, bytes]) -> dict[str, float]:
    """Model → seconds per job from ``RATES_KEY``, skipping anything that isn't a finite number."""
    rates = {}
    for name, value in stored.items():
        rate = number(value)
        if rate is not None:
            rates[name.decode(errors="replace")] = rate
    return rates


# shared state --------------------------------------------------------------------------------


async def transact(redis: Redis, keys: list[str], work: Callable[[Pipeline], Awaitable[D]]) -> D:
    """Run ``work(pipe)`` in a WATCH/MULTI transaction on ``keys`` until no one else changed them.

    ``work`` reads with the pipe (immediate mode), calls ``pipe.multi()`` and queues the writes.
    """
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(*keys)
                value = await work(pipe)
                await pipe.execute()
                return value
            except WatchError:
                continue


async def record_rate(redis: Redis, model: str, seconds: float) -> float:
    """Fold one run of ``model`` into the shared seconds-per-job average (workers call this)."""

    async def fold(pipe: Pipeline) -> float:
        old = number(await pipe.hget(RATES_KEY, model))  # type: ignore[misc]  # immediate mode: awaitable
        rate = update_rate(old, seconds)
        pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves Pipeline.multi unannotated
        pipe.hset(RATES_KEY, model, repr(rate))
        return rate

    return await transact(redis, [RATES_KEY], fold)


# connecting ----------------------------------------------------------------------------------


def redis_settings(url: str) -> RedisSettings:
    """arq's connection settings for ``url``: ``redis://`` or ``rediss://`` (TLS, the server's certificate
    and host name checked; ``?ssl_ca_certs=/path/ca.pem`` names a private CA), ``:password@`` or
    ``user:password@`` for AUTH (percent-encoded characters are decoded), ``/N`` for the database."""
    base = RedisSettings.from_dsn(url)
    parts = urlsplit(url)
    ca_certs = parse_qs(parts.query).get("ssl_ca_certs", [None])[0]
    return dataclasses.replace(
        base,
        username=unquote(base.username) if base.username else None,
        password=unquote(base.password) if base.password else None,
        ssl_check_hostname=base.ssl,
        ssl_ca_certs=ca_certs,
    )
