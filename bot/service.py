"""The use cases every face calls: submit, act (buttons), cancel, history, settings, info.

Adapters translate platform messages into these calls and render what comes back; they catch
``Refusal`` (a friendly one-line reason) and nothing else of ours. Job events reach the adapter
that owns the job's platform through the handler it registered with ``listen``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image

from bot import access, images, metadata, policy, requests, sheets
from bot.actions import Button, Press, derive_request, parse_button
from bot.flags import MAX_SEED, Given, flag_table
from bot.history import History, JobRecord, LogEntry, OutputRecord, UserRecord
from bot.jobs import Action, Event, Job, Origin, Request, Result, Status, new_job_id
from bot.loras import lora_base
from bot.models import Models
from bot.moderation import SOURCE_FLAGGED, Classifier
from bot.queue.port import JobQueue, QueueUnavailable
from bot.settings import Limits, Settings
from bot.styles import MAX_CHAT_STYLES, TRANSFER_KIND, Style, StyleError, StyleList, check_name, make_style
from bot.text import hide_paths, neutral

log = logging.getLogger(__name__)

Handler = Callable[[JobRecord, Event], Awaitable[None]]
Availability = Callable[[], Awaitable[dict[str, "str | None"]]]

NO_WORKER = "no worker is serving"  # bot.queue merge_heartbeats: a group waiting for its workers
ASK_FOR_PROMPT = (
    'What should I make of this picture? Send it again with a prompt, e.g. "a watercolor of it"'
    ' or "make it winter --style cinematic" (/styles lists the styles).'
)
CUTOUT_MISSING = (
    "✂️ Cut out isn't set up on this server yet: it needs the cut-out model, which the bot's operator can "
    "install with `remixbot weights install cutout`."
)
GONE = {
    "deleted": "That result was deleted.",
    "expired": "That result has expired: pictures are kept for a limited time.",
}


class Refusal(Exception):
    """A request the bot turns down; ``str()`` is a friendly, user-safe line for the chat."""


FORGET_WINDOW = 300.0  # seconds a /forget confirmation code stays good


@dataclass(frozen=True)
class Forgetting:
    """``Service.forget``'s answer: asked (a code to confirm with) or done (``code`` empty)."""

    jobs: int  # the user's jobs: to be forgotten, or forgotten
    code: str = ""

    @property
    def done(self) -> bool:
        return not self.code


@dataclass(frozen=True)
class Ticket:
    """A submitted job: what the adapter shows at once ("Queued — position 2")."""

    jobs: tuple[Job, ...]  # the job, then one per --compare model
    position: int
    offer: str = ""  # settings found in the source PNG that the user may want to reuse

    @property
    def job(self) -> Job:
        return self.jobs[0]


class Service:
    def __init__(
        self,
        settings: Settings,
        models: Models,
        history: History,
        queue: JobQueue,
        availability: Availability | None = None,
        classifier: Classifier | None = None,
    ):
        self.settings = settings
        self.models = models
        self.history = history
        self.queue = queue
        self._availability = availability
        self.classifier = classifier  # checks sources before they are queued (outputs: in the engine)
        self.operator = policy.Operator(
            banned=settings.banned_words,
            blocked=settings.blocked_users,
            server_defaults=policy.Rules(
                nsfw=policy.Nsfw(settings.server_nsfw),
                daily_quota=settings.server_daily_quota,
                cooldown=settings.server_cooldown,
            ),
        )
        self._handlers: dict[str, Handler] = {}
        self._live: dict[str, JobRecord] = {}  # records of jobs under way, so progress costs no query
        # events of platforms with no handler yet (a recovered job before its adapter is up): job → event
        self._undelivered: dict[str, dict[str, Event]] = collections.defaultdict(dict)
        # (platform, user) → times of recent requests, for the per-minute rate limit
        self._recent: dict[tuple[str, str], collections.deque[float]] = collections.defaultdict(collections.deque)
        self._submit_lock = asyncio.Lock()
        self._forget_codes: dict[tuple[str, str], tuple[str, float]] = {}  # (platform, user) → (code, until)
        self._sweeper: asyncio.Task[None] | None = None

    # lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the queue and pick up jobs left unfinished by the last run."""
        await self.queue.start(self._on_event, on_reconnect=self.recover)
        await self.recover()
        if self.settings.retention_days > 0:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_now_and_then())

    async def recover(self) -> None:
        """Check every unfinished job against the queue: deliver, leave running, or queue again.

        At start (jobs of the last run) and whenever the queue got its connection back (a Redis
        restart may have lost jobs or the events that finished them). A job whose inputs are gone
        fails with a message, so nothing counts against a user's cap forever."""
        for job_id in await self.history.unfinished():
            try:
                job = await self.history.load_job(job_id)
            except OSError:  # its input files are gone
                job = None
            if job is None:
                error = "This job can't run any more (its images are gone). Please send it again."
                await self._on_event(Event(job_id, Status.failed, result=Result(job_id, Status.failed, error=error)))
                continue
            await self.history.requeue(job_id)
            log.info("recovering job %s", job_id)
            try:
                await self.queue.recover(job)
            except Exception:  # Redis went away again: the next reconnect checks once more
                log.exception("recovering job %s failed", job_id)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await self.queue.close()

    async def _sweep_now_and_then(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # a background task: nobody else would see it
                log.exception("the retention sweep failed")
            await asyncio.sleep(self.settings.retention_sweep)

    async def sweep(self, now: float | None = None) -> int:
        """Delete the files of jobs finished more than REMIXBOT_RETENTION_DAYS ago (their records stay,
        so a press on one says it expired). Returns how many jobs lost their files."""
        if self.settings.retention_days <= 0:
            return 0
        moment = (time.time() if now is None else now) - self.settings.retention_days * 86400
        expired = await self.history.finished_before(moment)
        for job_id in expired:
            await self.history.remove_files(job_id, "expired")  # the files go on a thread
        if expired:
            log.info("retention: the files of %s jobs expired", len(expired))
        return len(expired)

    def listen(self, platform: str, handler: Handler) -> None:
        """Route events of jobs from ``platform`` to ``handler`` (one per platform).

        Events that arrived before the handler (say, a job recovered at start) are handed over now.
        """
        self._handlers[platform] = handler
        waiting = self._undelivered.pop(platform, {})
        if waiting:
            asyncio.get_running_loop().create_task(self._hand_over(handler, list(waiting.values())))

    async def _hand_over(self, handler: Handler, events: list[Event]) -> None:
        for event in events:
            record = await self.history.job(event.job_id)
            if record is not None:
                await handler(record, event)

    # submitting ------------------------------------------------------------------------------

    async def submit(
        self,
        origin: Origin,
        text: str,
        image: bytes,
        references: tuple[bytes, ...] = (),
        *,
        parent_job: str | None = None,
        parent_output: int | None = None,
        options: Mapping[str, Given] | None = None,
    ) -> Ticket:
        """A remix of ``image`` as ``text`` (prompt and flags) asks. Raises Refusal.

        ``options``: flag values a face took apart from the text (Discord's typed options), by flag name.
        The images are decoded, their parameters read and the text parsed on a thread: a hostile
        file slows its own request only. A --compare set is queued whole or not at all.
        """
        user = await self.history.user(origin)
        limits = self.settings.limits
        if len(references) > limits.max_references:
            raise Refusal(f"Up to {limits.max_references} reference images, please (got {len(references)}).")
        models = await self.models_here(origin)
        source, refs, request, offer = await asyncio.to_thread(
            _prepare, text, image, references, self._defaults(user), limits, models, self._source_side(), options
        )
        request = self._resolve(request)
        await self._check_available([request.model, *request.compare])
        jobs = [
            self._job(origin, Action.remix, replace(request, model=model), source, refs, parent_job, parent_output)
            for model in (request.model, *request.compare)
        ]
        return await self._enqueue(user, jobs, offer, compare=bool(request.compare))

    def _source_side(self) -> int:
        """The longest side any model works at: a stored source is never larger (nor upscaled)."""
        return int(max([self.settings.limits.max_size, *(entry.size for entry in self.models)]))

    async def act(self, origin: Origin, button: str | Press) -> Ticket:
        """The job a button press makes from an earlier result. Raises Refusal.

        The result must be visible to the presser (``bot.access``); its image goes through the
        same limits as an upload, and an upscale whose result would pass the output cap is refused.
        """
        press = parse_button(button) if isinstance(button, str) else button
        if press is None or press.button.action is None:
            raise Refusal("That button doesn't start a new job.")
        parent = await self.job(origin, press.job_id)
        user = await self.history.user(origin)
        action = press.button.action
        if not self.models.serves(action):
            raise Refusal(CUTOUT_MISSING)
        if press.button is Button.reroll:
            image, references = await self._source_of(parent.id)
            seed = random.randint(0, MAX_SEED)
            parent_output = None
            flagged = False
        else:
            output = _output(parent, press.index)
            if not output.media_type.startswith("image/"):
                raise Refusal("That works on images only.")
            image = await _read(output)
            size = await asyncio.to_thread(_check_derived, image, self.settings.limits)
            _, references = await self._source_of(parent.id)
            fresh = press.button in (Button.vary, Button.varystrong)
            seed = random.randint(0, MAX_SEED) if fresh else output.seed
            parent_output = output.index
            flagged = output.flagged
            if action is Action.upscale:
                self._check_output(size, parent.request.scale or 2)
        # reroll and vary keep the parent's model; upscale, fix face and animate use theirs
        model = None if action in (Action.reroll, Action.vary) else self.models.for_action(action).name
        rules = await self.rules(origin, user)
        limits = self.settings.limits
        request = derive_request(
            press,
            parent.request,
            seed=seed,
            model=model,
            vary_subtle=self.settings.vary_strength_subtle,
            vary_strong=self.settings.vary_strength_strong,
            # this chat's own --size cap holds too: a zoom out grows to it, a size asked before it shrinks
            max_size=min(limits.max_size, rules.max_size) if rules.max_size else limits.max_size,
            max_output_size=min(limits.max_output_size, rules.max_size) if rules.max_size else limits.max_output_size,
        )
        if action is Action.cutout:
            await self._check_cutout(request.model)
        await self._check_available([request.model])
        job = self._job(origin, action, self._resolve(request), image, references, parent.id, parent_output)
        # its source was checked already: the parent's when it was submitted, or an output by the engine
        if flagged and rules.nsfw is policy.Nsfw.block:
            message = "That result can't be used here: the content filter flagged it."
            raise await self._refuse(origin, policy.Breach("classifier", message, "a flagged result"))
        return await self._enqueue(user, [job], "", source_checked=True)

    def _check_output(self, size: tuple[int, int], scale: int) -> None:
        limit = self.settings.limits.max_output_pixels
        width, height = size[0] * scale, size[1] * scale
        if width * height > limit:
            raise Refusal(
                f"That would make a {width}×{height} picture; the largest I make is {images.megapixels(limit)}."
            )

    async def _check_cutout(self, name: str) -> None:
        """✂️ Cut out without its weights: say how to install them rather than name a missing file."""
        try:
            reason = (await self.availability()).get(name)
        except QueueUnavailable:
            return  # _check_available says so
        if reason is not None and "weights install" in reason:
            raise Refusal(CUTOUT_MISSING)

    async def _check_available(self, names: list[str]) -> None:
        """Refuse a job whose model can't run here (before it is queued, on every face alike).

        A group with no live worker (Redis mode) is no reason: its jobs wait for the next worker.
        """
        try:
            availability = await self.availability()
        except QueueUnavailable as unavailable:  # Redis is down: the same refusal a submit would get
            raise Refusal(str(unavailable)) from None
        for name in names:
            reason = availability.get(name)
            if reason is not None and not reason.startswith(NO_WORKER):
                raise Refusal(f"The model {name} isn't available on this server right now: {reason}")

    async def _source_of(self, job_id: str) -> tuple[bytes, tuple[bytes, ...]]:
        try:
            job = await self.history.load_job(job_id)
        except OSError:
            job = None
        if job is None:
            raise Refusal("That result's source picture is no longer on the server.")
        return job.image, job.references

    def _job(
        self,
        origin: Origin,
        action: Action,
        request: Request,
        image: bytes,
        references: tuple[bytes, ...],
        parent_job: str | None,
        parent_output: int | None,
    ) -> Job:
        entry = self.models[request.model]
        return Job(
            id=new_job_id(),
            action=action,
            request=request,
            image=image,
            origin=origin,
            group=entry.queue_group,
            references=references,
            parent_job=parent_job,
            parent_output=parent_output,
        )

    async def _enqueue(
        self, user: UserRecord, jobs: list[Job], offer: str, *, compare: bool = False, source_checked: bool = False
    ) -> Ticket:
        """Check the source, the caps and the chat's rules for all the jobs, record them all, then queue
        them: all or none."""
        first = jobs[0]
        rules = await self.rules(first.origin, user)
        if not source_checked:  # a --compare set's one source is checked once
            jobs = await self._check_source(jobs, rules)
            first = jobs[0]
        async with self._submit_lock:  # the cap check and the inserts must not interleave
            await self._check_limits(user, first.origin, len(jobs))
            for job in jobs:
                await self._check_rules(user, job, rules)
            for job in jobs:
                await self.history.add_job(job, user.id, compare_of=first.id if compare else None)
        positions = []
        for queued, job in enumerate(jobs):
            try:
                positions.append(await self.queue.submit(job))
            except QueueUnavailable as unavailable:  # the rest end here, off the cap
                for left in jobs[queued:]:
                    await self.history.finish(Result(left.id, Status.failed, error=str(unavailable)))
                raise Refusal(str(unavailable)) from None
        for job in jobs:
            log.info(
                "job %s queued (%s, %s) for %s:%s",
                job.id,
                job.action.value,
                job.request.model,
                job.origin.platform,
                user.id,
            )
        return Ticket(jobs=tuple(jobs), position=positions[0], offer=offer)

    def _resolve(self, request: Request) -> Request:
        """Fill what the engine would otherwise pick, so the history tells the truth."""
        entry = self.models[request.model]
        return replace(
            request,
            seed=request.seed if request.seed is not None else random.randint(0, MAX_SEED),
            num_inference_steps=request.num_inference_steps or entry.num_inference_steps,
            guidance_scale=request.guidance_scale if request.guidance_scale is not None else entry.guidance_scale,
        )

    async def _check_limits(self, user: UserRecord, origin: Origin, count: int = 1) -> None:
        limits = self.settings.limits
        waiting = await self.history.count_jobs(user.id, Status.queued, Status.running)
        if count > 1 and waiting + count > limits.max_queued_per_user:
            raise Refusal(
                f"That makes {count} jobs and you have {waiting} waiting; the limit is {limits.max_queued_per_user}."
                " Try fewer models, or again when one finishes (or /cancel)."
            )
        if waiting >= limits.max_queued_per_user:
            raise Refusal(
                f"You already have {waiting} jobs waiting; the limit is {limits.max_queued_per_user}."
                " Try again when one finishes (or /cancel)."
            )
        recent = self._recent[(origin.platform, origin.user_id)]
        now = time.monotonic()
        while recent and now - recent[0] > 60:
            recent.popleft()
        if len(recent) + count > limits.rate_per_minute:
            wait = int(60 - (now - recent[0])) + 1 if recent else 60
            raise Refusal(f"Easy there — {limits.rate_per_minute} requests a minute at most. Try again in {wait} s.")
        recent.extend([now] * count)

    # styles and LoRAs (bot/styles.py, bot/loras.py) ----------------------------------------

    async def chat_styles(self, origin: Origin) -> dict[str, Style]:
        """The styles the admins of ``origin``'s server or group added (none in a private chat)."""
        where = policy.scope(origin)
        if where is None:
            return {}
        found = {}
        for name, data in (await self.history.styles(where)).items():
            try:
                found[name] = make_style(name, data, scope=where)
            except (StyleError, TypeError, ValueError):  # stored by an older version: skipped, not fatal
                log.warning("style %s of %s can't be read", name, where)
        return found

    async def models_here(self, origin: Origin) -> Models:
        """The registry as requests from ``origin`` see it: the global styles with the chat's own on top."""
        chat = await self.chat_styles(origin)
        return replace(self.models, styles={**self.models.styles, **chat}) if chat else self.models

    async def styles(self, origin: Origin) -> StyleList:
        """/styles: the global styles and the chat's own (a chat style hides a global one of its name)."""
        chat = await self.chat_styles(origin)
        return StyleList(
            shared=tuple(style for name, style in sorted(self.models.styles.items()) if name not in chat),
            own=tuple(chat[name] for name in sorted(chat)),
            transfer=any(entry.kind == TRANSFER_KIND for entry in self.models),
        )

    async def add_style(self, origin: Origin, name: str, text: str) -> Style:
        """Add (or replace) a style of ``origin``'s server or group from ``TEMPLATE --no … --model …
        --strength …`` (the caller checked the user is an admin there). Raises Refusal."""
        where = policy.scope(origin)
        if where is None:
            raise Refusal("Styles of your own are for servers and groups; in a private chat use the global ones.")
        flags = flag_table(self.settings.limits)
        try:
            key = check_name(name)
            template, written = requests.split_flags(text, flags)
            extra = set(written) - {"no", "model", "strength"}
            if extra:
                raise Refusal(f"A style sets a prompt, --no, --model and --strength; not --{sorted(extra)[0]}.")
            values = {flag: flags[flag].take(raw) for flag, raw in written.items()}
            model = ""
            if "model" in values:
                model = requests.require_model(str(values["model"]), self.models)
            style = make_style(
                key,
                {
                    "prompt": requests.unquote(template),
                    "negative_prompt": values.get("no", ""),
                    "model": model,
                    "strength": values.get("strength"),
                },
                scope=where,
            )
            requests.pick_loras(style.apply("test"), self.models)  # every LoRA it names is here
        except (StyleError, requests.RequestError) as error:
            raise Refusal(str(error)) from None
        existing = await self.chat_styles(origin)
        if key not in existing and len(existing) >= MAX_CHAT_STYLES:
            raise Refusal(f"This chat has {len(existing)} styles, the most it may have; remove one first.")
        await self.history.save_style(where, key, style.to_data())
        log.info("style %s saved for %s by %s:%s", key, where, origin.platform, origin.user_id)
        return style

    async def remove_style(self, origin: Origin, name: str) -> None:
        """Remove one of the chat's own styles (the caller checked the user is an admin). Raises Refusal."""
        where = policy.scope(origin)
        key = name.strip().lower()
        if where is None or not await self.history.delete_style(where, key):
            raise Refusal(f"This chat has no style of its own called {name.strip()[:40]!r}.")

    async def loras(self) -> list[tuple[str, str]]:
        """/loras: (name, base model) of every LoRA in the LoRA folder, by name (headers read on a thread)."""
        found = sorted(self.models.loras.items(), key=lambda item: item[0].lower())
        return await asyncio.to_thread(lambda: [(name, lora_base(path)) for name, path in found])

    # moderation (bot/policy.py) ---------------------------------------------------------------

    async def rules(self, origin: Origin, user: UserRecord | None = None) -> policy.Rules:
        """The rules where ``origin`` is: its server's or group's, or a private chat's (the user's NSFW)."""
        where = policy.scope(origin)
        if where is None:
            user = user or await self.history.user(origin)
            return policy.Rules(nsfw=policy.Nsfw(user.settings.get("nsfw", policy.Nsfw.block)))
        stored = await self.history.rules(where)
        defaults = self.operator.server_defaults
        return defaults if stored is None else policy.Rules.from_data(stored, defaults)

    async def change_rules(self, origin: Origin, **changes: object) -> policy.Rules:
        """Change the rules of ``origin``'s server or group (the caller checked the user is its admin).

        Raises Refusal in a private chat or for a value that makes no sense."""
        where = policy.scope(origin)
        if where is None:
            raise Refusal("Server settings are for servers and groups; in a private chat use /settings.")
        current = await self.rules(origin)
        try:
            rules = policy.Rules.from_data(changes, current)
        except (TypeError, ValueError):
            raise Refusal("That isn't a valid setting.") from None
        unknown = [name for name in rules.models if name not in self.models]
        if unknown:
            raise Refusal(f"There's no model called {unknown[0]!r}. Try: {', '.join(self.models.names())}.")
        if min(rules.max_num_images, rules.max_size, rules.max_steps, rules.daily_quota, rules.cooldown) < 0:
            raise Refusal("Limits are 0 (none) or more.")
        await self.history.save_rules(where, rules.to_data())
        return rules

    async def change_nsfw(self, origin: Origin, nsfw: str) -> policy.Nsfw:
        """A user's own NSFW setting for their private chat with the bot. Raises Refusal."""
        try:
            value = policy.Nsfw(nsfw)
        except ValueError:
            raise Refusal("NSFW is block, spoiler or allow.") from None
        user = await self.history.user(origin)
        await self.history.save_settings(user.id, {**user.settings, "nsfw": value.value})
        return value

    async def moderation_log(self, origin: Origin, *, page: int = 0, per_page: int = 10) -> list[LogEntry]:
        """The refusals in ``origin``'s server or group, newest first (the caller checked it is an admin)."""
        return await self.history.moderation_log(_log_scope(origin), limit=per_page, offset=page * per_page)

    async def _refuse(self, origin: Origin, breach: policy.Breach) -> Refusal:
        await self.history.log_refusal(_log_scope(origin), origin, breach.reason, breach.detail, breach.score)
        log.info("refused %s:%s (%s)", origin.platform, origin.user_id, breach.reason)
        return Refusal(breach.message)

    async def _check_source(self, jobs: list[Job], rules: policy.Rules) -> list[Job]:
        """Under ``block``, a source the classifier flags is refused before it is queued.

        When this process has no classifier but the registry names one (Redis mode, a classifier
        that needs torch), the jobs go marked ``screen_source``: the worker checks the source first
        and a flagged one fails with ``Result.refused`` (logged when its event arrives)."""
        if rules.nsfw is not policy.Nsfw.block:
            return jobs
        if self.classifier is None:
            if self.models.classifier is None:
                return jobs
            return [replace(job, screen_source=True) for job in jobs]
        (verdict,) = await self.classifier.classify([jobs[0].image])
        if verdict.flagged:
            raise await self._refuse(
                jobs[0].origin, policy.Breach("classifier", SOURCE_FLAGGED, verdict.label, verdict.score)
            )
        return jobs

    async def _check_rules(self, user: UserRecord, job: Job, rules: policy.Rules) -> None:
        breach = policy.check_request(rules, self.operator, job.origin, job.request)
        if breach is None and (rules.cooldown or rules.daily_quota):
            now = time.time()
            where = policy.scope(job.origin)
            recent = [
                at for at, origin in await self.history.job_times(user.id, now - 86400) if policy.scope(origin) == where
            ]
            breach = policy.check_pace(rules, recent, now)
        if breach is not None:
            raise await self._refuse(job.origin, breach)

    async def _screen(self, result: Result) -> tuple[Result, frozenset[int]]:
        """A finished result as the chat's policy lets it through, and the outputs to post as spoilers.

        Under ``block`` the outputs the classifier flagged are dropped here, before anything is stored;
        when none is left the job fails with a calm message."""
        flagged = [o for o in result.outputs if o.verdict is not None and o.verdict.flagged]
        if not flagged:
            return result, frozenset()
        record = await self.history.job(result.job_id)
        if record is None:
            return result, frozenset()
        rules = await self.rules(record.origin)
        if rules.nsfw is policy.Nsfw.spoiler:
            return result, frozenset(o.index for o in flagged)
        if rules.nsfw is policy.Nsfw.allow:
            return result, frozenset()
        worst = max(flagged, key=lambda o: o.verdict.score if o.verdict else 0.0)
        label = worst.verdict.label if worst.verdict else ""
        detail = f"{len(flagged)} of {len(result.outputs)} results held back; {label}".strip("; ")
        score = worst.verdict.score if worst.verdict else None
        await self.history.log_refusal(_log_scope(record.origin), record.origin, "classifier", detail, score)
        held = {o.index for o in flagged}
        kept = tuple(o for o in result.outputs if o.index not in held)
        if kept:
            note = "; ".join(filter(None, (result.note, f"{len(flagged)} held back by the content filter")))
            return replace(result, outputs=kept, note=note), frozenset()
        error = "The content filter held this result back. Try another prompt or seed."
        return replace(result, status=Status.failed, outputs=(), error=error), frozenset()

    # the rest of the use cases ---------------------------------------------------------------

    async def job(self, origin: Origin, job_id: str) -> JobRecord:
        """A job the caller may see (``bot.access``), with its files still there. Raises Refusal.

        An unknown job and someone else's read alike: nothing tells them apart.
        """
        record = await self.history.job(job_id)
        if record is None or not access.may_see(record.origin, origin):
            raise Refusal(access.NOT_HERE)
        if record.removed:
            raise Refusal(GONE.get(record.removed, access.NOT_HERE))
        return record

    async def info(self, origin: Origin, job_id: str | None = None) -> JobRecord:
        """A job's record for /info and the Info button: ``job_id``, or the caller's newest job that
        can be seen where they are. Raises Refusal."""
        if job_id is not None:
            return await self.job(origin, job_id)
        user = await self.history.user(origin)
        for page in range(20):
            records = await self.history.jobs_of(user.id, limit=50, offset=page * 50)
            for record in records:
                if access.may_see(record.origin, origin):
                    return record
            if len(records) < 50:
                break
        raise Refusal("You have no jobs here yet.")

    async def cancel(self, origin: Origin, job_id: str | None = None, *, is_admin: bool = False) -> list[str]:
        """Cancel one job (the caller's, or any posted here when ``is_admin``: the platform says the
        caller administers this chat), or all the caller's queued and running ones. Returns the ids."""
        user = await self.history.user(origin)
        if job_id is not None:
            record = await self.history.job(job_id)
            if record is None or not access.may_see(record.origin, origin):
                raise Refusal(access.NOT_HERE)
            if not access.may_cancel(record.origin, origin, is_admin=is_admin):
                raise Refusal("Only the person who asked for that job can cancel it (or an admin here).")
            candidates = [record]
        else:
            candidates = await self.history.jobs_of(user.id, limit=100)
        cancelled = []
        for record in candidates:
            if not record.status.finished and await self.queue.cancel(record.id):
                cancelled.append(record.id)
        return cancelled

    async def delete(
        self,
        origin: Origin,
        job_id: str,
        *,
        shown_in: str | None = None,
        message_at: str | None = None,
        is_admin: bool = False,
    ) -> None:
        """Delete a result: its files now; the adapter then deletes the message. Raises Refusal.

        Only the job's own message is ever deleted: the platform vouches for the message the button
        was pressed on, either by what it shows (``shown_in``: the job its own caption or buttons
        name) or by where it is (``message_at``: ``chat:message``, as the history keeps it); never
        the button id. ``is_admin``: the platform says the caller administers this chat.
        """
        record = await self.history.job(job_id)
        own = (shown_in is not None and shown_in == job_id) or (
            message_at is not None and record is not None and record.status_message == message_at
        )
        if record is None or not access.may_see(record.origin, origin) or not own:
            raise Refusal(access.NOT_HERE)
        if not access.may_delete(record.origin, origin, is_admin=is_admin):
            raise Refusal("Only the person who asked for this result, or an admin here, can delete it.")
        if not record.status.finished:
            await self.queue.cancel(record.id)
        await self.history.remove_files(record.id, "deleted")
        log.info("job %s deleted by %s:%s", record.id, origin.platform, origin.user_id)

    async def original(self, origin: Origin, job_id: str, index: int) -> tuple[OutputRecord, bytes]:
        """The lossless file of a result (PNG with its parameters, or a clip). Raises Refusal."""
        output = _output(await self.job(origin, job_id), index)
        return output, await _read(output)

    async def forget(self, origin: Origin, code: str | None = None) -> Forgetting:
        """/forget: without ``code``, how many jobs would go and the code that confirms it (good for
        a few minutes, for this user only); with the right code, the user's jobs are cancelled and
        their history, settings and files deleted. Raises Refusal (a wrong or stale code)."""
        user = await self.history.user(origin)
        key = (origin.platform, origin.user_id)
        if code is None:
            fresh = new_job_id()  # 12 hex: it fits the button vocabulary (``forget:<code>``)
            self._forget_codes[key] = (fresh, time.monotonic() + FORGET_WINDOW)
            return Forgetting(jobs=await self.history.count_jobs(user.id), code=fresh)
        expected, until = self._forget_codes.get(key, ("", 0.0))
        if not expected or code != expected or time.monotonic() > until:
            raise Refusal("That confirmation isn't valid (any more); send /forget again.")
        del self._forget_codes[key]
        for record in await self.history.jobs_of(user.id, limit=1000):
            if not record.status.finished:
                await self.queue.cancel(record.id)
        count = await self.history.forget_user(user.id)
        self._recent.pop(key, None)
        log.info("forgot %s:%s and %s jobs", origin.platform, origin.user_id, count)
        return Forgetting(jobs=count)

    async def jobs(self, origin: Origin, *, page: int = 0, per_page: int = 5) -> list[JobRecord]:
        """The user's own jobs, newest first (private: only theirs)."""
        user = await self.history.user(origin)
        return await self.history.jobs_of(user.id, limit=per_page, offset=page * per_page)

    async def user_settings(self, origin: Origin) -> requests.Defaults:
        return self._defaults(await self.history.user(origin))

    async def change_settings(self, origin: Origin, **changes: Any) -> requests.Defaults:
        """Save per-user defaults (model, strength, num_images_per_prompt). Raises Refusal."""
        user = await self.history.user(origin)
        current = self._defaults(user)
        model = changes.get("model", current.model)
        if model not in self.models:
            raise Refusal(f"There's no model called {model!r}. Try: {', '.join(self.models.names())}.")
        strength = changes.get("strength", current.strength)
        if strength is not None and not 0 <= strength <= 1:
            raise Refusal(f"strength must be between 0 and 1, got {strength}")
        n = changes.get("num_images_per_prompt", current.num_images_per_prompt)
        if not 1 <= n <= self.settings.limits.max_num_images:
            raise Refusal(f"n must be between 1 and {self.settings.limits.max_num_images}, got {n}")
        saved = {"model": model, "strength": strength, "num_images_per_prompt": n}
        await self.history.save_settings(user.id, saved)
        return requests.Defaults(**saved)

    async def change_setting(self, origin: Origin, key: str, raw: str) -> requests.Defaults:
        """One setting from a button or a typed ``key=value``: ``model``, ``strength`` (``auto`` or
        ``default``: the model's own) or ``n``. Raises Refusal."""
        if key == "model":
            availability = await self.availability()
            name = requests.resolve_model(raw, self.models)
            if name is not None and availability.get(name) is not None:
                raise Refusal(f"The model {name} isn't available on this server right now: {availability[name]}")
            return await self.change_settings(origin, model=name or raw)
        if key == "strength":
            strength = None if raw in ("auto", "default") else _number(float, raw)
            return await self.change_settings(origin, strength=strength)
        if key in ("n", "num_images_per_prompt"):
            return await self.change_settings(origin, num_images_per_prompt=_number(int, raw))
        raise Refusal(f"Settings are model, strength and n (got {neutral(key)[:40]!r}).")

    async def compare_sheet(self, job_id: str, *, again: bool = False) -> bytes | None:
        """The labelled side-by-side PNG of a --compare set (any of its jobs' ids), to post once.

        None until the set's last job has finished, and None to every later call: of the set's
        finished events, exactly one gets the sheet (``again=True`` builds it whenever asked). None
        too when no job of the set produced an image.
        """
        record = await self.history.job(job_id)
        if record is None or record.compare_of is None:
            return None
        jobs = await self.history.compared(record.compare_of)
        expected = 1 + len(jobs[0].request.compare)
        if len(jobs) < expected or not all(job.status.finished for job in jobs):
            return None
        if not any(_pictures(job) for job in jobs):
            return None
        if not again and not await self.history.claim_compare_sheet(record.compare_of):
            return None
        return await asyncio.to_thread(_compare_png, jobs)

    async def before_after(self, origin: Origin, job_id: str, index: int = 0) -> bytes:
        """A labelled before | after PNG: a job's source next to its output ``index``. Raises Refusal."""
        record = await self.job(origin, job_id)
        output = _output(record, index)
        if not output.media_type.startswith("image/"):
            raise Refusal("Before/after works on images only.")
        try:
            return await asyncio.to_thread(
                _before_after_png, self.history.source_path(record.id), output.path, record.request.model
            )
        except OSError:
            raise Refusal("That result's files are no longer on the server.") from None

    async def availability(self, *, for_chat: bool = True) -> dict[str, str | None]:
        """Model name → None when it can run (here, or on a live worker), else why not.

        ``for_chat``: the reasons name files by their last part only, never the operator's paths.
        """
        if self._availability is None:
            return {name: None for name in self.models.names()}
        found = await self._availability()
        if not for_chat:
            return found
        return {name: None if reason is None else hide_paths(reason) for name, reason in found.items()}

    def _defaults(self, user: UserRecord) -> requests.Defaults:
        saved = user.settings
        model = str(saved.get("model", ""))
        if model not in self.models:
            model = self.models.for_action(Action.remix).name
        return requests.Defaults(
            model=model,
            strength=saved.get("strength"),
            num_images_per_prompt=int(saved.get("num_images_per_prompt", 1)),
        )

    # events ----------------------------------------------------------------------------------

    def _checked(self, result: Result) -> Result:
        """A result as it may be kept: outputs within the output cap, its texts neutralised."""
        limit = self.settings.limits.max_output_pixels
        if any(output.width * output.height > limit for output in result.outputs):
            log.warning("job %s: a result over %s pixels was refused", result.job_id, limit)
            return Result(
                result.job_id,
                Status.failed,
                error=f"The result was larger than {images.megapixels(limit)}, so it wasn't kept.",
                engine=result.engine,
            )
        return replace(result, error=hide_paths(neutral(result.error)), note=hide_paths(neutral(result.note)))

    async def _on_event(self, event: Event) -> None:
        if event.status is Status.running and event.total == 0:
            await self.history.mark_running(event.job_id)
            self._live.pop(event.job_id, None)  # its status changed: read it again
        if event.status.finished:
            self._live.pop(event.job_id, None)
            result, spoilers = await self._screen(self._checked(event.result or Result(event.job_id, event.status)))
            if not await self.history.finish(result, spoilers):
                return  # delivered already: every result reaches the chat once
            if result.status is Status.failed:
                log.info("job %s failed: %s", event.job_id, result.error)
            record = await self.history.job(event.job_id)
            if record is not None and result.refused is not None:  # the worker refused its source
                verdict = result.refused
                scope = _log_scope(record.origin)
                await self.history.log_refusal(scope, record.origin, "classifier", verdict.label, verdict.score)
        else:  # progress: one read per job, not one per step
            record = self._live.get(event.job_id) or await self.history.job(event.job_id)
            if record is not None and not record.status.finished:
                self._live[event.job_id] = record
        if record is None or (record.status.finished and not event.status.finished):
            return  # unknown, or a late progress event of a finished job
        handler = self._handlers.get(record.origin.platform)
        if handler is None:
            self._undelivered[record.origin.platform][record.id] = event
        else:
            await handler(record, event)


def _log_scope(origin: Origin) -> str:
    """Where a refusal is logged: its server's or group's scope, or the platform's private chats."""
    return policy.scope(origin) or f"{origin.platform}:private"


def _prepare(
    text: str,
    image: bytes,
    references: tuple[bytes, ...],
    defaults: requests.Defaults,
    limits: Limits,
    models: Models,
    side: int,
    options: Mapping[str, Given] | None = None,
) -> tuple[bytes, tuple[bytes, ...], Request, str]:
    """The CPU part of a submission (run on a thread): decode the images, read the parameters a PNG
    carries, parse the text. Returns (source PNG, reference PNGs, request, offer). Raises Refusal."""
    source = _decode(image, limits, side)
    refs = tuple(_decode(data, limits, side) for data in references)
    offer = ""
    generation = metadata.read_generation(image)
    found = generation.settings if generation is not None and generation.usable else None
    try:
        if not text.strip() and not options:
            if found is None:  # nothing to go on: ask rather than remix with no prompt
                raise Refusal(ASK_FOR_PROMPT)
            request = requests.request_from_parameters(found, defaults=defaults, models=models, limits=limits)
        else:
            request = requests.parse_request(text, defaults=defaults, limits=limits, models=models, given=options)
            if found and not _has_flags(text) and not options:
                offer = _offer(found, defaults, models, limits)
    except requests.RequestError as error:
        raise Refusal(str(error)) from None
    return source, refs, request, offer


def _offer(found: dict[str, Any], defaults: requests.Defaults, models: Models, limits: Limits) -> str:
    """The source image's settings as a request to reuse; "" when they can't be used here (an unknown LoRA)."""
    try:
        return requests.format_request(
            requests.request_from_parameters(found, defaults=defaults, models=models, limits=limits)
        )
    except requests.RequestError:
        return ""


def _decode(data: bytes, limits: Limits, side: int) -> bytes:
    """Safely decode any image to normalised sRGB PNG bytes no larger than any model uses (what jobs
    carry and the history keeps). Raises Refusal."""
    try:
        image = images.decode(data, max_bytes=limits.max_image_bytes, max_pixels=limits.max_image_pixels, max_side=side)
    except images.ImageError as error:
        raise Refusal(str(error)) from None
    return images.encode_png(image)


def _check_derived(data: bytes, limits: Limits) -> tuple[int, int]:
    """An earlier result used as a new job's input meets the limits an upload meets: its size."""
    try:
        return images.check_image(data, max_bytes=limits.max_image_bytes, max_pixels=limits.max_image_pixels)
    except images.ImageError as error:
        raise Refusal(str(error)) from None


def _output(record: JobRecord, index: int) -> OutputRecord:
    output = next((o for o in record.outputs if o.index == index), None)
    if record.status is not Status.done or output is None:
        raise Refusal("That result isn't ready (or has no such image).")
    return output


async def _read(output: OutputRecord) -> bytes:
    try:
        return await asyncio.to_thread(output.path.read_bytes)
    except OSError:
        raise Refusal("That file is no longer on the server.") from None


def _number(kind: type[float] | type[int], raw: str) -> float:
    try:
        return kind(raw)
    except ValueError:
        raise Refusal(f"That isn't a setting I know ({neutral(raw)[:40]!r}).") from None


def _pictures(record: JobRecord) -> list[Path]:
    if record.status is not Status.done:
        return []
    return [out.path for out in record.outputs if out.media_type.startswith("image/")]


def _open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def _compare_png(jobs: list[JobRecord]) -> bytes:
    columns = []
    for job in jobs:
        pictures = tuple(_open_rgb(path) for path in _pictures(job))
        if job.status is Status.failed:
            note = f"failed: {job.error}"
        elif job.status is Status.done:
            note = "a clip: sent on its own" if job.outputs else "no image"
        else:
            note = job.status.value
        columns.append(sheets.Column(label=job.request.model, pictures=pictures, note=note))
    return images.encode_png(sheets.sheet(columns))


def _before_after_png(source: Path, result: Path, model: str) -> bytes:
    columns = [sheets.Column("before", (_open_rgb(source),)), sheets.Column(f"after ({model})", (_open_rgb(result),))]
    return images.encode_png(sheets.sheet(columns))


def _has_flags(text: str) -> bool:
    return any(token.startswith(("--", "—", "–")) for token in text.split())
