"""A session's long work: run in a worker thread, holding the one model's lock (which also
guards the models served beside it: the compare mode's reference, the generate mode's draft),
cancellable.

Each browser session has its own `Worker`; the model is shared read-only and called only
while holding `lock`. A session's work stops at the model's next module call when it is
cancelled (its Cancel button, or its page gone), so that it does not hold up the others;
work waiting for the lock says which other page's work it waits for.
"""
from __future__ import annotations

import asyncio
import threading
import time
from contextlib import contextmanager

CANCEL_POLL_S = 0.2  # how often work waiting for the model checks whether it was cancelled
HOLDERS: dict[int, "Worker"] = {}  # id(lock) -> the session's worker whose work holds the model now


class Cancelled(Exception):
    """Raised in the worker thread when its session cancels its work."""


class Worker:
    """One session's access to the model: `holding(stage)` in a thread started by
    `in_background`; `cancel` set stops the work."""

    def __init__(self, model, lock: threading.Lock, *beside):
        """`beside`: the models served beside `model` (the reference, the draft; None: not served),
        called only under the same lock and cancelled the same way."""
        self.model, self.lock = model, lock
        self.networks = [m.hf for m in (model, *beside) if getattr(m, "hf", None) is not None]  # (cancellable)
        self.stage = ""  # what the background work is doing (written by the worker thread)
        self.holding_since = 0.0  # when the work began to hold the model (time.monotonic)
        self.cancel = threading.Event()  # set: the work stops at the model's next module call

    @contextmanager
    def holding(self, stage: str):
        """The model, while holding its lock (in a worker thread); `stage` says what is done.
        Raises Cancelled when the session cancels its work, while it waits for the lock or
        at the model's next module call."""
        while not self.lock.acquire(timeout=CANCEL_POLL_S):
            if self.cancel.is_set():
                raise Cancelled
        try:
            self.stage, self.holding_since = stage, time.monotonic()
            HOLDERS[id(self.lock)] = self
            with self._cancellable():
                yield self.model
        finally:
            HOLDERS.pop(id(self.lock), None)
            self.lock.release()

    @contextmanager
    def _cancellable(self):
        """While in this block, every call of a module of the model (a layer, a projection, the
        lm_head) first checks whether the session cancelled its work (a cooperative check:
        a long forward pass stops within one layer, a generation within one step)."""
        def check(_module, _inputs):
            if self.cancel.is_set():
                raise Cancelled

        handles = [module.register_forward_pre_hook(check) for network in self.networks for module in network.modules()]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _waiting_for(self) -> str:
        """What work waiting for the model waits for: the session that holds it, what that one
        does and for how long."""
        holder = HOLDERS.get(id(self.lock))
        if holder is None:
            return " (waiting for the model)" if self.lock.locked() else ""
        return (f" (waiting for another page's work to finish: {holder.stage or 'starting'}, running for "
                f"{time.monotonic() - holder.holding_since:.0f} s)")

    async def in_background(self, work, say):
        """Run `work` in a thread; meanwhile `say` how long it has been running, what it is
        doing (`stage`) or that it waits for another session's work."""
        started = time.monotonic()
        self.stage = ""  # until `work` holds the model
        task = asyncio.ensure_future(asyncio.to_thread(work))
        while True:
            doing = f": {self.stage}" if self.stage else self._waiting_for()
            if self.cancel.is_set():
                doing = ": cancelling (the model stops at its next layer)"
            say(f"Working… {time.monotonic() - started:.0f} s{doing}")
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                return task.result()
