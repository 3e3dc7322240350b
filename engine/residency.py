"""Resident models under a memory budget: the engine's model cache.

A loaded model stays resident until the budget needs its room; then the least recently used model
that is not running is dropped. A resident model is never loaded again, so switching between
resident models costs nothing.

A model's size is its ``nbytes`` attribute when its kind sets one, else the bytes of the torch
parameters and buffers it holds (on the model itself, its ``pipe``'s components, or a ``model``
attribute one level down). The classic kind holds none and counts 0. Sizes are only looked at
through ``torch`` when torch is already imported, so classic-only work never imports it.

``prefetch`` loads a model on the loader thread (``engine-loader``) while another one runs, but
only when its expected size fits in the budget's free room: a prefetch never evicts anything.
"""

from __future__ import annotations

import collections
import concurrent.futures
import gc
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from bot.models import ModelEntry
from engine.work import Model

log = logging.getLogger(__name__)

Loader = Callable[[ModelEntry], Model]
Expectation = Callable[[ModelEntry], "int | None"]


class Residency:
    """Models by registry name, loaded once, kept while the budget allows, evicted least recently used."""

    def __init__(self, load: Loader, budget: int | None = None, expect: Expectation | None = None):
        self._load = load
        self._expect = expect or (lambda entry: None)
        self.budget = budget  # bytes; None: no limit (yet: the engine sets it once it knows its device)
        self._models: collections.OrderedDict[str, Model] = collections.OrderedDict()  # LRU first
        self._sizes: dict[str, int] = {}  # last measured size of every model ever loaded
        self._in_use: collections.Counter[str] = collections.Counter()
        self._loading: dict[str, concurrent.futures.Future[Model]] = {}
        self._reserved: dict[str, int] = {}  # expected bytes of prefetches under way
        self._lock = threading.Lock()
        self._loader = concurrent.futures.ThreadPoolExecutor(1, "engine-loader")
        self.loads: collections.Counter[str] = collections.Counter()
        self.evictions: collections.Counter[str] = collections.Counter()

    # --- what the engine calls -------------------------------------------------------------------

    def acquire(self, entry: ModelEntry) -> Model:
        """The resident model for ``entry``, marked in use until ``release``; loads it when needed.

        Loading happens on the calling thread, unless a prefetch of the same model is under way: then
        this waits for it instead of loading twice. A load error propagates (and is not cached).
        """
        with self._lock:
            if entry.name in self._models:
                return self._use(entry.name)
            future = self._loading.get(entry.name)
            owner = future is None
            if future is None:
                future = self._loading[entry.name] = concurrent.futures.Future()
        if owner:
            self._fill(entry, future, use=True)
            return future.result()
        model = future.result()  # a prefetch's model (or its error)
        with self._lock:
            if entry.name not in self._models:  # evicted between its arrival and now: take it back
                self._admit(entry.name, model, self._sizes.get(entry.name, 0))
            return self._use(entry.name)

    def release(self, entry: ModelEntry) -> None:
        with self._lock:
            self._in_use[entry.name] -= 1
            if self._in_use[entry.name] <= 0:
                del self._in_use[entry.name]

    def prefetch(self, entry: ModelEntry) -> concurrent.futures.Future[bool]:
        """Load ``entry`` on the loader thread if its expected size fits in the free room.

        The future gives True when the model is resident (or another load of it is under way), False
        when the budget has no room for it, its size cannot be told before loading it, or it failed.
        """
        try:
            return self._loader.submit(self._prefetch, entry)
        except RuntimeError:  # closed
            done: concurrent.futures.Future[bool] = concurrent.futures.Future()
            done.set_result(False)
            return done

    def _prefetch(self, entry: ModelEntry) -> bool:
        with self._lock:
            if entry.name in self._models or entry.name in self._loading:
                return True
        expected = self._sizes.get(entry.name)
        if expected is None:
            try:
                expected = self._expect(entry)
            except Exception:  # noqa: BLE001 - an estimate is a hint; without one there is no prefetch
                log.exception("could not estimate the size of %s", entry.name)
        with self._lock:
            if entry.name in self._models or entry.name in self._loading:
                return True
            if expected is None or not self._fits(expected):
                log.info(
                    "not prefetching %s: %s",
                    entry.name,
                    "its size is unknown" if expected is None else "no room in the memory budget",
                )
                return False
            future: concurrent.futures.Future[Model] = concurrent.futures.Future()
            self._loading[entry.name] = future
            self._reserved[entry.name] = expected
        log.info("prefetching %s (~%d MiB)", entry.name, expected >> 20)
        self._fill(entry, future, use=False)
        if future.exception() is not None:
            log.warning("prefetching %s failed: %s", entry.name, future.exception())
            return False
        return True

    def peek(self, name: str) -> Model | None:
        with self._lock:
            return self._models.get(name)

    def resident(self) -> list[str]:
        """Resident model names, least recently used first."""
        with self._lock:
            return list(self._models)

    def used(self) -> int:
        with self._lock:
            return sum(self._sizes.get(name, 0) for name in self._models)

    def loading(self) -> list[str]:
        with self._lock:
            return list(self._loading)

    def close(self) -> None:
        self._loader.shutdown(wait=False, cancel_futures=True)

    # --- inside -------------------------------------------------------------------------------------

    def _use(self, name: str) -> Model:
        self._models.move_to_end(name)
        self._in_use[name] += 1
        return self._models[name]

    def _fits(self, size: int) -> bool:
        if self.budget is None:
            return True
        taken = sum(self._sizes.get(name, 0) for name in self._models) + sum(self._reserved.values())
        return taken + size <= self.budget

    def _fill(self, entry: ModelEntry, future: concurrent.futures.Future[Model], use: bool) -> None:
        """Load ``entry``, admit it, and settle ``future`` with the model (or the error)."""
        try:
            model = self._load(entry)
            size = size_of(model)
        except BaseException as error:  # noqa: BLE001 - handed to whoever waits on the future
            with self._lock:
                self._loading.pop(entry.name, None)
                self._reserved.pop(entry.name, None)
            future.set_exception(error)
            return
        with self._lock:
            self.loads[entry.name] += 1
            self._sizes[entry.name] = size
            self._reserved.pop(entry.name, None)
            evicted = self._admit(entry.name, model, size)
            if use:
                self._use(entry.name)
            self._loading.pop(entry.name, None)
        future.set_result(model)
        log.info(
            "%s is resident (%d MiB; %d MiB of %s in use)",
            entry.name,
            size >> 20,
            self.used() >> 20,
            "no limit" if self.budget is None else f"{self.budget >> 20} MiB",
        )
        if evicted:
            free_memory()

    def _admit(self, name: str, model: Model, size: int) -> list[str]:
        """Make room for ``size`` bytes (least recently used, idle models first) and keep ``model``."""
        evicted = []
        if self.budget is not None:
            used = sum(self._sizes.get(other, 0) for other in self._models if other != name)
            for other in list(self._models):
                if used + size <= self.budget:
                    break
                if other == name or self._in_use[other] > 0 or not self._sizes.get(other):
                    continue  # the new model, one that runs, or one that frees nothing
                del self._models[other]
                used -= self._sizes.get(other, 0)
                self.evictions[other] += 1
                evicted.append(other)
                log.info("evicted %s to make room for %s", other, name)
            if used + size > self.budget:
                log.warning(
                    "%s (%d MiB) is kept over the memory budget: the models in use need the rest", name, size >> 20
                )
        self._models[name] = model
        self._models.move_to_end(name)
        return evicted


def size_of(model: Any) -> int:
    """Bytes a loaded model holds: its ``nbytes`` if it says, else its torch parameters and buffers."""
    nbytes = getattr(model, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    torch = sys.modules.get("torch")
    if torch is None or getattr(getattr(torch, "__spec__", None), "_initializing", False):
        return 0  # torch isn't (fully) imported yet, say by another group's thread: no tensors to count
    modules: dict[int, Any] = {}
    for value in _attributes(model):
        candidates = [value]
        components = getattr(value, "components", None)
        if isinstance(components, dict):  # a diffusers pipeline
            candidates += list(components.values())
        candidates.append(getattr(value, "model", None))  # e.g. a spandrel descriptor
        for candidate in candidates:
            if isinstance(candidate, torch.nn.Module):
                modules[id(candidate)] = candidate
    tensors: dict[int, Any] = {}
    for module in modules.values():
        for tensor in (*module.parameters(), *module.buffers()):
            tensors[id(tensor)] = tensor
    return sum(t.numel() * t.element_size() for t in tensors.values())


def _attributes(model: Any) -> list[Any]:
    values = [model]
    try:
        values += list(vars(model).values())
    except TypeError:  # no __dict__ (slots): the model itself only
        pass
    return values


def free_memory() -> None:
    """Give freed tensors' memory back (to the allocator's device, for CUDA)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
