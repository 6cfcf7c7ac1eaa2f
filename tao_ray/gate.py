"""The gate actor: ObjectRefs for tasks waiting in TAO's admission queue.

A task that must wait is not submitted to Ray yet; the caller gets the ObjectRef of
``Gate.hold(tid)``, a coroutine on an async actor (no CPU reserved, on the driver's node)
that waits until the driver admits the task, submits it, and passes its ObjectRef with
``release``; ``hold`` then returns the task's result (or raises its error).
"""
from __future__ import annotations

import asyncio
from typing import Any

import ray


@ray.remote(num_cpus=0, enable_task_events=False)
class Gate:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._refs: dict[str, list] = {}

    def _event(self, tid: str) -> asyncio.Event:
        ev = self._events.get(tid)
        if ev is None:
            ev = self._events[tid] = asyncio.Event()
        return ev

    async def hold(self, tid: str) -> Any:
        await self._event(tid).wait()
        self._events.pop(tid, None)
        box = self._refs.pop(tid)
        return await box[0]

    async def release(self, items: list) -> int:
        """``items``: [(tid, [ObjectRef])]; the list keeps Ray from resolving the ref."""
        for tid, box in items:
            self._refs[tid] = box
            self._event(tid).set()
        return len(items)

    async def waiting(self) -> int:
        return sum(1 for e in self._events.values() if not e.is_set())
