"""The gate actor: ObjectRefs for tasks waiting in TAO's admission queue.

A waiting task is not submitted to Ray yet; the caller gets the ObjectRef of
``Gate.hold(tid)``, a coroutine on an async actor (no CPU reserved, on the driver's node)
that waits until the driver submits the task and passes its ObjectRef with ``release``;
``hold`` then returns the task's result (or raises its error).
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

    async def hold(self, tid: str) -> Any:
        await self._events.setdefault(tid, asyncio.Event()).wait()
        self._events.pop(tid, None)
        return await self._refs.pop(tid)[0]

    async def release(self, items: list) -> int:
        """``items``: [(tid, [ObjectRef])]; the list keeps Ray from resolving the ref."""
        for tid, box in items:
            self._refs[tid] = box
            self._events.setdefault(tid, asyncio.Event()).set()
        return len(items)
