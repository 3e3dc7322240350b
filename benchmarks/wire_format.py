"""Benchmark — the cost of the wire format: what a job and its result cost to cross Redis.

    python benchmarks/wire_format.py [--repeat 200]

The baseline, in the same run, is what crossed Redis before: ``pickle`` of the same plain data (results
and arq's job envelope), then ``from_data``. The new path is ``bot.queue.wire``: msgpack, and on the way
in the shape and type checks that refuse anything that isn't ours. No Redis: this is the CPU time of
encoding and decoding alone (the bot decodes results, the worker decodes jobs).

Payloads: a small job (a 64×64 source) and its one-output result; a big job (a 1 MiB source and three
1 MiB references) and a big result (four 1.5 MiB outputs, what --n 4 at 1536 px comes to); the bytes
are random, so they don't compress.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import os  # noqa: E402
import pickle  # noqa: E402  - the baseline only: nothing of ours unpickles
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

from bot.jobs import Action, Job, Origin, Output, Request, Result, Status  # noqa: E402
from bot.queue.wire import RUN_JOB, decode_job, decode_result, encode_result, pack_arq, unpack_arq  # noqa: E402

MIB = 1024 * 1024


def job(image: int, references: int) -> Job:
    return Job(
        id="3f9a0c1b2d4e",
        action=Action.remix,
        request=Request(prompt="a watercolor of the harbor " * 4, model="classic", strength=0.6, seed=1),
        image=os.urandom(image),
        origin=Origin(platform="discord", user_id="1", chat_id="2", guild_id="3"),
        references=tuple(os.urandom(image) for _ in range(references)),
    )


def result(outputs: int, size: int) -> Result:
    made = tuple(Output(i, i, os.urandom(size), width=1536, height=1024) for i in range(outputs))
    return Result("3f9a0c1b2d4e", Status.done, outputs=made, engine="classic", seconds=1.5)


def envelope(data: dict) -> dict:
    return {"t": 1, "f": RUN_JOB, "a": [data], "k": {}, "et": 0}


def timed(work: Callable[[], object], repeat: int) -> float:
    """Median milliseconds of ``work``."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args(argv)
    small_job, big_job = job(3_000, 0), job(MIB, 3)
    small_result, big_result = result(1, 3_000), result(4, 3 * MIB // 2)
    print(f"Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f}, median of {args.repeat}\n")
    print("| payload | bytes (pickle → msgpack) | pickle encode+decode | msgpack + checks | difference |")
    print("|---|---|---|---|---|")
    for name, item in [
        ("small job", small_job),
        ("big job", big_job),
        ("small result", small_result),
        ("big result", big_result),
    ]:
        old, new, sizes = paths(item)
        assert old() == new() == item
        before, after = timed(old, args.repeat), timed(new, args.repeat)
        print(f"| {name} | {sizes} | {before:.3f} ms | {after:.3f} ms | {after - before:+.3f} ms |")


def paths(item: Job | Result) -> tuple[Callable[[], object], Callable[[], object], str]:
    """The old and the new round trip of ``item`` (encode, then decode as the reader does), and the sizes."""
    if isinstance(item, Job):
        data = envelope(item.to_data())

        def old() -> object:
            return Job.from_data(pickle.loads(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))["a"][0])

        def new() -> object:
            return decode_job(unpack_arq(pack_arq(data))["a"][0])

        encoded = pack_arq(data)
    else:
        data = item.to_data()

        def old() -> object:
            return Result.from_data(pickle.loads(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)))

        def new() -> object:
            return decode_result(encode_result(item))

        encoded = encode_result(item)
    return old, new, f"{len(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)):,} → {len(encoded):,}"


if __name__ == "__main__":
    main()
