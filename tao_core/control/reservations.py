"""Tasks holding a reservation: what each PLACE reserved, its predicted end, and the
energy of each job spent and in flight.

A PLACE reserves the task's CPUs and GPUs on its node until ``task_finished`` or
``cancel`` (the node's columns are kept by :class:`~tao_core.control.cluster.ClusterView`;
this module keeps the tasks). Predicted ends are kept in a heap with lazy deletion, so
the earliest one is found in amortised O(log n).

Units: seconds, joules, CPUs and GPUs.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Optional


@dataclass(slots=True)
class Reservation:
    """One placed task."""

    task_id: str
    group: str
    job: Optional[str]
    node_id: str
    ti: int               #: node type row
    cpus: float
    gpus: float
    placed_s: float
    pred_dur_s: float     #: predicted run time, s
    pred_energy_j: float  #: marginal energy predicted at placement (the penalty's E), J
    model_attr_j: float   #: uncorrected model prediction of the task's attributed energy, J
    end_s: float          #: predicted end, s
    started_s: Optional[float] = None


class Reservations:
    """The placed tasks, by task and by node, their predicted ends, and job energy."""

    def __init__(self) -> None:
        self._tasks: dict[str, Reservation] = {}
        self._by_node: dict[str, set[str]] = {}
        self._ends: list[tuple[float, str]] = []  # heap of (predicted end, task id), stale entries skipped
        self.job_spent_j: dict[str, float] = {}   #: measured (or predicted) joules of finished tasks per job
        self._job_inflight_j: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def get(self, task_id: str) -> Optional[Reservation]:
        return self._tasks.get(task_id)

    # ------------------------------------------------------------------ nodes
    def add_node(self, node_id: str) -> None:
        self._by_node[node_id] = set()

    def drop_node(self, node_id: str) -> None:
        self._by_node.pop(node_id, None)

    def on_node(self, node_id: str) -> list[str]:
        """Ids of the tasks reserved on ``node_id``."""
        return list(self._by_node.get(node_id, ()))

    def latest_end(self, node_id: str) -> float:
        """Latest predicted end of the work reserved on ``node_id`` (-inf when none)."""
        ids = self._by_node.get(node_id)
        tasks = self._tasks
        return max((tasks[x].end_s for x in ids), default=-math.inf) if ids else -math.inf

    # ------------------------------------------------------------------ tasks
    def add(self, r: Reservation) -> None:
        self._tasks[r.task_id] = r
        self._by_node[r.node_id].add(r.task_id)
        heapq.heappush(self._ends, (r.end_s, r.task_id))
        if r.job is not None:
            self._job_inflight_j[r.job] = self._job_inflight_j.get(r.job, 0.0) + r.pred_energy_j

    def started(self, task_id: str, now_s: float) -> Optional[Reservation]:
        """Mark a placed task started now; returns it when its predicted end moved."""
        r = self._tasks.get(task_id)
        if r is None or r.started_s is not None:
            return None
        r.started_s = now_s
        end = now_s + r.pred_dur_s
        if end == r.end_s:
            return None
        r.end_s = end
        heapq.heappush(self._ends, (end, task_id))
        return r

    def pop(self, task_id: str) -> Reservation:
        """Remove a placed task (KeyError when unknown)."""
        r = self._tasks.pop(task_id)
        if len(self._ends) > 2 * len(self._tasks) + 64:  # drop stale heap entries, amortised O(1)
            self._ends = [(x.end_s, x.task_id) for x in self._tasks.values()]
            heapq.heapify(self._ends)
        if r.job is not None:
            v = self._job_inflight_j.get(r.job, 0.0) - r.pred_energy_j
            if v <= 1e-9:
                self._job_inflight_j.pop(r.job, None)
            else:
                self._job_inflight_j[r.job] = v
        ids = self._by_node.get(r.node_id)
        if ids is not None:
            ids.discard(task_id)
        return r

    def next_end(self) -> Optional[float]:
        """The earliest predicted end of reserved work (None when nothing is reserved)."""
        h = self._ends
        tasks = self._tasks
        while h:
            end, tid = h[0]
            t = tasks.get(tid)
            if t is None or t.end_s != end:
                heapq.heappop(h)
                continue
            return end
        return None

    # ------------------------------------------------------------------ jobs
    def job_energy_j(self, job: str) -> float:
        """Joules of ``job``: finished tasks as measured plus running ones as predicted."""
        return self.job_spent_j.get(job, 0.0) + self._job_inflight_j.get(job, 0.0)

    def job_finished(self, job: str, energy_j: float) -> None:
        """Add a finished task's joules to its job."""
        self.job_spent_j[job] = self.job_spent_j.get(job, 0.0) + float(energy_j)
