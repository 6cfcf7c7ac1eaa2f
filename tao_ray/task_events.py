"""What ran where and when on the Ray cluster, wrapped by TAO or not, from Ray's own task
events (the state API ``ray.util.state``: ``ray[default]`` and Ray's dashboard on the head).

Each finished or failed task attempt becomes a :class:`tao_core.task_rows.TaskRow` (node,
RUNNING to FINISHED/FAILED in ms, job, name, actor, CPUs reserved; an actor's creation task
gets its actor's node). Ray's limits (Ray 2.60: events reach the GCS about a second late,
the GCS keeps at most 100,000 attempts and evicts finished ones first, workers drop events
beyond their buffer, one query returns at most 10,000 entries) are met by reading every
job's attempts every ``task_events_poll_s`` and keeping all seen; what Ray dropped or cut
is in :attr:`TaskEventReader.gaps`, per job, for the report. See the README, section "Ray".
"""
from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any, Optional

from tao_core.task_rows import TaskRow

log = logging.getLogger("tao_ray")

KNOWN_BY = "ray-task-events"
RESOLUTION_S = 0.001
#: most entries one state-API query returns (Ray's RAY_MAX_LIMIT_FROM_API_SERVER default)
QUERY_LIMIT = 10_000
_MISSING = re.compile(r"retrieve all (\d+) tasks.*?\(> (\d+)\)", re.S)


class TaskEventReader:
    """Keeps every ended task attempt of the cluster's jobs seen since ``since_s``
    (wall-clock s), read through Ray's state API (see module doc)."""

    def __init__(self, since_s: float, address: Optional[str] = None) -> None:
        self.since_s = since_s
        self.address = address
        self._rows: dict[tuple[str, int], TaskRow] = {}
        self._lock = threading.Lock()
        self.gaps: dict[str, str] = {}  # job id -> what Ray could not give
        self.jobs: dict[str, dict[str, Any]] = {}  # job id -> submission id, entrypoint, status
        self.unavailable: Optional[str] = None

    def poll(self) -> None:
        """Read the tasks of every job alive since ``since_s`` (errors are kept, not raised)."""
        try:
            from ray.util.state import list_actors, list_jobs

            jobs = [j for j in list_jobs(address=self.address, limit=QUERY_LIMIT, raise_on_missing_output=False)
                    if not j.end_time or j.end_time / 1000.0 >= self.since_s]
            actors = {a.actor_id: a.node_id for a in list_actors(address=self.address, limit=QUERY_LIMIT,
                                                                  raise_on_missing_output=False)}
        except Exception as e:  # noqa: BLE001 - no dashboard, or it is down
            self._unavailable(e)
            return
        for j in jobs:
            if j.job_id is None:
                continue
            self.jobs[j.job_id] = {"submission_id": j.submission_id, "entrypoint": j.entrypoint,
                                   "status": str(j.status), "type": str(j.type)}
            try:
                tasks = self._tasks_of(j.job_id)
            except Exception as e:  # noqa: BLE001
                self._unavailable(e)
                return
            self._keep(tasks, actors)
        self.unavailable = None

    def poll_until_seen(self, task_ids: set[str], wait_s: float) -> set[str]:
        """Poll until every task in ``task_ids`` (Ray task ids, hex) has an ended attempt here,
        for at most ``wait_s`` seconds (Ray's events of a busy cluster can come several seconds
        late); the ids still unseen."""
        end = time.time() + wait_s
        while True:
            self.poll()
            with self._lock:
                left = task_ids - {tid for tid, _attempt in self._rows}
            if not left or time.time() >= end or self.unavailable:
                return left
            time.sleep(0.5)

    def _tasks_of(self, job_id: str) -> list[Any]:
        from ray.util.state import list_tasks
        from ray.util.state.exception import RayStateApiException

        kw = dict(address=self.address, filters=[("job_id", "=", job_id)], detail=True, limit=QUERY_LIMIT)
        try:
            tasks = list_tasks(**kw, raise_on_missing_output=True)
        except RayStateApiException as e:
            m = _MISSING.search(str(e))
            self.gaps[job_id] = (f"Ray's task events of job {job_id} are incomplete: "
                                 + (f"{int(m.group(1)) - int(m.group(2))} of {m.group(1)} task attempts dropped or "
                                    "cut by Ray" if m else str(e).splitlines()[0]))
            tasks = list_tasks(**kw, raise_on_missing_output=False)
        if len(tasks) >= QUERY_LIMIT:
            self.gaps[job_id] = (f"job {job_id} had {QUERY_LIMIT} or more task attempts in Ray's store at one read; "
                                 "Ray returns at most that many per query, so some may not have been read")
        return tasks

    def _keep(self, tasks: list[Any], actor_nodes: dict[str, Optional[str]]) -> None:
        with self._lock:
            for t in tasks:
                if t.state not in ("FINISHED", "FAILED") or not t.start_time_ms or not t.end_time_ms:
                    continue
                if t.end_time_ms / 1000.0 < self.since_s:
                    continue
                node = t.node_id or actor_nodes.get(t.actor_id or "")
                if not node:
                    continue
                res = t.required_resources or {}
                self._rows[(t.task_id, int(t.attempt_number or 0))] = TaskRow(
                    task_id=t.task_id if not t.attempt_number else f"{t.task_id}:{t.attempt_number}",
                    node_id=node, start_s=t.start_time_ms / 1000.0, end_s=t.end_time_ms / 1000.0,
                    name=t.name or t.func_or_class_name, job=t.job_id, cpus=float(res.get("CPU", 0.0)),
                    known_by=KNOWN_BY, resolution_s=RESOLUTION_S, actor_id=t.actor_id)

    def _unavailable(self, e: Exception) -> None:
        if self.unavailable is None:
            log.warning("tao_ray: Ray's state API is unreachable (%s: %s); work not wrapped by TAO is not "
                        "accounted (its energy stays in the nodes' idle share) until it answers. It needs "
                        "ray[default] and Ray's dashboard on the head node.", type(e).__name__, e)
        self.unavailable = f"{type(e).__name__}: {e}"

    def rows(self) -> list[TaskRow]:
        with self._lock:
            return list(self._rows.values())

    def notes(self) -> list[str]:
        """What the accounting could not see, in words (empty when nothing is missing)."""
        out = list(self.gaps.values())
        if self.unavailable:
            out.append(f"Ray's state API was unreachable at the last read ({self.unavailable}): tasks not wrapped "
                       "by TAO since the previous read are not accounted")
        return out

    def resolve_job(self, job: str) -> str:
        """A job id from a job id or a Ray Jobs submission id (as given when unknown)."""
        if job in self.jobs:
            return job
        return next((jid for jid, j in self.jobs.items() if j.get("submission_id") == job), job)
