"""A node's sampler: reads its energy source in a background thread, keeps the node's
timeline, takes the spans of the wrapped tasks that ran there and attributes the timeline
to them as it settles. An engine runs one per node (``tao_ray`` in an actor pinned to it).

Source (:func:`make_source`): the node's process set modeled from its curve (several
engine nodes on one machine), else ``tao_core.telemetry.detect()`` where it measures
(RAPL, NVML), else the curve at machine-wide CPU utilization. Times are wall clock.

Settled attribution. Every ``settle_every_s`` the sampler attributes the stretch of its
timeline that is *settled* with :func:`tao_core.attribution.attribute`, the function and
inputs of the report: it ends at the last reading before the start of the oldest task
still running on the node (each worker process says so with its spans) and at least
``SPAN_LAG_S`` in the past (spans of tasks that just ended are still on their way). Each
stretch gets the joules the final report gives it; each task whose span it covers gets a
:class:`~tao_core.live.timeline.TaskEnergy` (what the controller learns from) and the sink
hears of the stretch (live metrics). A worker silent for ``STALE_S`` is taken as gone.

Units of work the node's tasks counted (``tao.count``) arrive as
:class:`~tao_core.live.values.UnitCount` items (``add_counts``) and are handed over with the
rest; the report charges them to the tasks by task id.

Memory: the whole timeline up to ``max_rows`` readings (about 11 hours at 0.2 s, oldest
dropped first once settled), spans until fetched and settled, task energies and unit counts
until fetched (at most ``max_energies`` each).
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Callable, Iterable, Optional, Union

from tao_core.attribution import Attribution, attribute
from tao_core.power.curve import PowerCurve
from tao_core.task_rows import spans_from_rows
from tao_core.telemetry.base import EnergySource
from tao_core.telemetry.composite import CompositeSource
from tao_core.telemetry.estimator import CURVE_UNCERTAINTY, ModeledSource
from tao_core.live.timeline import reading_of, row_of, wrapper_rows
from tao_core.live.values import SamplerBatch, SpanRow, TaskEnergy, TimelineRow, UnitCount

log = logging.getLogger("tao_core.live")

#: seconds from a task's end until its span has surely reached the sampler (workers flush
#: every 0.2 s; on a host loaded ten times over its cores a flush took over a second to arrive,
#: and a stretch settled before it lost that task's share)
SPAN_LAG_S = 2.5
#: seconds of silence after which a worker process that said it runs a task is taken as gone
STALE_S = 10.0
#: most readings a sampler keeps
MAX_ROWS = 200_000


def make_source(curve: PowerCurve, cpus: float, *, processes: Union[Callable[[], Iterable[int]], None] = None,
                uncertainty: float = CURVE_UNCERTAINTY, label: str = "power curve") -> EnergySource:
    """The node's best energy source (see the module doc), reading wall-clock times."""
    if processes is None:
        from tao_core.telemetry.detect import detect

        det = detect(power_curve=curve, cpus=cpus)
        if det.measured:
            return CompositeSource(det.sources, thermal=det.thermal, clock=time.time)
        det.close()
    return ModeledSource(curve, cpus=cpus, processes=processes, uncertainty=uncertainty, curve_label=label,
                         clock=time.time)


class SamplerSink:
    """Where a sampler's news goes (live metrics, the controller); this one drops it."""

    def row(self, row: TimelineRow, temperature_k: Optional[float]) -> None:
        """A new reading."""

    def settled(self, att: Attribution, source: str) -> None:
        """A newly settled stretch, attributed."""


NULL_SINK = SamplerSink()


class NodeSampler:
    """Samples one node every ``interval_s`` seconds (see the module doc); ``cpus``: its
    logical CPUs, ``idle_w``: its static watts."""

    def __init__(self, node_id: str, source: EnergySource, *, cpus: float, idle_w: float, interval_s: float,
                 settle_every_s: float = 1.0, sink: SamplerSink = NULL_SINK, max_rows: int = MAX_ROWS,
                 max_energies: int = 100_000) -> None:
        self.node_id = node_id
        self.source = source
        self.cpus = max(float(cpus), 1e-3)
        self.idle_w = float(idle_w)
        self.interval_s = interval_s
        self.settle_every_s = settle_every_s
        self.sink = sink
        self.max_rows = max_rows
        #: a new value for each sampler: its indexes and counters start afresh
        self.incarnation = uuid.uuid4().hex
        self.settled_j = {"tasks": 0.0, "idle": 0.0}
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()  # one reading at a time
        self._rows: list[TimelineRow] = []
        self._spans: list[SpanRow] = []
        self._unsettled: list[SpanRow] = []  # spans ending after the settled instant
        self._partial: dict[str, float] = {}  # joules of tasks settled in part
        self._energies: list[TaskEnergy] = []  # settled, not fetched yet
        self._counts: list[UnitCount] = []  # not fetched yet
        self.max_energies = max_energies
        self._running: dict[int, tuple[float, float]] = {}  # worker pid -> (heard at, oldest running start)
        self._settled_idx = 0  # index in _rows of the last settled reading
        self._bases = [0, 0, 0, 0]  # absolute index of the first row, span, energy and count held
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tao-sampler", daemon=True)
        self.sample()

    def start(self) -> "NodeSampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------ sampling
    def sample(self) -> TimelineRow:
        """Read the source now and append the row (one reader at a time, rows in time order)."""
        with self._read_lock:
            r = self.source.read()
            row = row_of(r, getattr(self.source, "last_utilization", None))
            with self._lock:
                self._rows.append(row)
                drop = min(len(self._rows) - self.max_rows, self._settled_idx)
                if drop > 0:
                    del self._rows[:drop]
                    self._bases[0] += drop
                    self._settled_idx -= drop
        temps = [d.temperature_k for d in r.domains.values() if d.temperature_k is not None]
        self.sink.row(row, max(temps) if temps else None)
        return row

    def _loop(self) -> None:
        last_settle = time.time()
        while not self._stop.wait(self.interval_s):
            try:
                if time.time() - last_settle >= self.settle_every_s:
                    last_settle = time.time()
                    self.settle()
                self.sample()
            except Exception as e:  # noqa: BLE001 - keep sampling
                log.warning("sampler %s: %s: %s", self.node_id[:12], type(e).__name__, e)

    # ------------------------------------------------------------------ spans
    def add_spans(self, spans: list[SpanRow], pid: Optional[int] = None, running_since: Optional[float] = None) -> None:
        """Spans of wrapped tasks reported by worker ``pid``, with the start (wall-clock s) of
        its oldest task still running (None: none runs)."""
        with self._lock:
            self._spans.extend(spans)
            self._unsettled.extend(spans)
            if pid is not None:
                if running_since is None:
                    self._running.pop(pid, None)
                else:
                    self._running[pid] = (time.time(), float(running_since))

    def add_counts(self, counts: list[UnitCount]) -> None:
        """Units of work counted by tasks on this node (oldest dropped beyond ``max_energies``)."""
        with self._lock:
            self._counts.extend(counts)
            drop = len(self._counts) - self.max_energies
            if drop > 0:
                del self._counts[:drop]
                self._bases[3] += drop

    def fetch(self, since: tuple[int, ...] = (0, 0, 0, 0), incarnation: Optional[str] = None) -> SamplerBatch:
        """Rows, spans, task energies and unit counts from absolute indexes ``since`` on
        (missing trailing indexes: 0); spans, energies and counts before ``since`` count as
        fetched and are dropped (spans once settled). ``incarnation``: the sampler the
        caller's indexes belong to; when it is another (this sampler was restarted since),
        nothing is dropped: the caller reads this one from the start."""
        since = tuple(since) + (0,) * (4 - len(since))
        with self._lock:
            firsts = [max(s, b) for s, b in zip(since, self._bases)]
            mine = incarnation is None or incarnation == self.incarnation
            for k, held in ((1, self._spans), (2, self._energies), (3, self._counts)) if mine else ():
                drop = min(since[k], self._bases[k] + len(held)) - self._bases[k]
                if drop > 0:
                    del held[:drop]
                    self._bases[k] += drop
            return SamplerBatch(self.incarnation, since, firsts[0], self._rows[firsts[0] - self._bases[0]:],
                                firsts[1], self._spans[firsts[1] - self._bases[1]:], firsts[2],
                                self._energies[firsts[2] - self._bases[2]:], firsts[3],
                                self._counts[firsts[3] - self._bases[3]:])

    # ------------------------------------------------------------------ settling
    def _settled_stretch(self, now: float) -> Optional[tuple[list[TimelineRow], list[SpanRow]]]:
        """The rows newly settled and the spans within them (call with the lock held)."""
        bound = now - SPAN_LAG_S
        for pid, (heard, since) in list(self._running.items()):
            if now - heard > STALE_S:
                del self._running[pid]
            else:
                bound = min(bound, since)
        end = self._settled_idx
        while end + 1 < len(self._rows) and self._rows[end + 1].t_s <= bound:
            end += 1
        if end <= self._settled_idx:
            return None
        rows = self._rows[self._settled_idx:end + 1]
        t0, t1 = rows[0].t_s, rows[-1].t_s
        spans = [sp for sp in self._unsettled if sp.end_s > t0 and sp.start_s < t1]
        self._unsettled = [sp for sp in self._unsettled if sp.end_s > t1]
        self._settled_idx = end
        return rows, spans

    def settle(self, now: Optional[float] = None) -> tuple[float, float]:
        """Attribute the newly settled stretch now; (tasks J, idle J) of it."""
        with self._lock:
            got = self._settled_stretch(time.time() if now is None else now)
        if got is None:
            return 0.0, 0.0
        rows, spans = got
        att = attribute({self.node_id: [reading_of(r) for r in rows]}, spans_from_rows(wrapper_rows(spans))[0],
                        idle_w={self.node_id: self.idle_w}, node_cpus={self.node_id: self.cpus})
        t1 = rows[-1].t_s
        ends = {sp.task_id: (sp.start_s, sp.end_s) for sp in spans}
        with self._lock:
            for tid, e in zip(att.tasks["task_id"], att.tasks["energy_j"]):
                e += self._partial.pop(tid, 0.0)
                start, end = ends[tid]
                if end <= t1:
                    self._energies.append(TaskEnergy(tid, float(e), end - start))
                else:
                    self._partial[tid] = float(e)
            if len(self._energies) > self.max_energies:  # nobody fetches them: the oldest go
                drop = len(self._energies) - self.max_energies
                del self._energies[:drop]
                self._bases[2] += drop
            tasks_j = att.total_j - att.idle_j
            self.settled_j["tasks"] += tasks_j
            self.settled_j["idle"] += att.idle_j
        self.sink.settled(att, rows[-1].source)
        return tasks_j, att.idle_j

    def status(self) -> dict:
        """Joules attributed so far to tasks and to idle, the settled instant (wall-clock s),
        and what the sampler holds."""
        with self._lock:
            t = self._rows[self._settled_idx].t_s if self._rows else None
            return {**self.settled_j, "t_s": t, "running_workers": len(self._running),
                    "rows_held": len(self._rows), "spans_held": len(self._spans),
                    "readings": self._bases[0] + len(self._rows), "task_energies": self._bases[2] + len(self._energies)}
