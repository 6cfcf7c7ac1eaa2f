"""The per-node telemetry sampler: a Ray actor pinned to its node (hard node affinity,
``num_cpus=0``) that reads the node's best energy source in a background thread, keeps the
node's energy timeline, forwards power to the controller actor and collects the spans
(node, start, end, CPU seconds) that TAO-wrapped tasks on its node report.

Source choice: where one machine hosts several Ray nodes (``ray.cluster_utils.Cluster``),
each node is modeled from its own power curve at the CPU utilization of its raylet and
everything the raylet started (its workers); the sampler finds its raylet among its own
ancestors. Otherwise the sampler uses ``tao_core.telemetry.detect()`` when it yields a
measured source, else the node type's curve at machine-wide CPU utilization.
Times are wall-clock seconds (``time.time()``) so that spans from any process compare.

Live task energy. Every ``settle_every_s`` the sampler attributes the stretch of its
timeline that is *settled*, with :func:`tao_core.attribution.attribute`, the same function
and inputs as the report: a stretch ends at the last reading before the start of the
oldest task still running on the node (each worker process says so with its spans), and at
least ``SPAN_LAG_S`` in the past (spans of tasks that just ended are still on their way).
Attribution works interval by interval, so each settled stretch gets the joules the final
report gives it. The results go to Ray's metrics as ``tao_task_energy_joules`` (per group,
job and source) and ``tao_node_idle_energy_joules``: a task's energy appears once it ended
and its node's timeline passed its end. A worker process that has said nothing for
``STALE_S`` is taken as gone; a span it reports later is in the report but not in these
counters.

Memory. The sampler keeps the node's whole timeline (at most ``MAX_ROWS`` readings, about
11 hours at the default 0.2 s, oldest dropped first): the owning driver fetches it by
absolute index as it goes, and ``tao ray report`` reads it from the command line. Spans
are kept only until the driver fetched them and they are settled.

Every method takes the session token first and refuses callers without it
(:func:`tao_ray.records.check_token`); Ray records no task events for this actor's calls
(``enable_task_events=False``), so TAO's own traffic does not crowd out the user's tasks
in Ray's task-event store.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
from typing import Any, Optional

import psutil
import ray

from tao_core.power.curve import PowerCurve
from tao_core.telemetry.base import EnergySource, Reading
from tao_ray.records import CONTROLLER_NAME, NAMESPACE, SpanRow, TimelineRow, check_token

log = logging.getLogger("tao_ray")

#: seconds from a task's end until its span has surely reached the sampler
SPAN_LAG_S = 1.0
#: seconds of silence after which a worker process that said it runs a task is taken as gone
STALE_S = 10.0
#: most readings a sampler keeps (oldest dropped first)
MAX_ROWS = 200_000


def find_raylet_pid() -> Optional[int]:
    """Pid of the raylet among this process's ancestors (a Ray worker's parent), or None."""
    try:
        p = psutil.Process().parent()
        while p is not None:
            if "raylet" in p.name():
                return p.pid
            p = p.parent()
    except (psutil.Error, OSError):
        return None
    return None


def make_source(curve: PowerCurve, cpus: float, shared_machine: bool, name: str,
                curve_label: str) -> EnergySource:
    """The best energy source for this node (see module doc)."""
    from tao_core.telemetry.estimator import ModeledSource

    if shared_machine:
        raylet = find_raylet_pid()
        if raylet is not None:
            return ModeledSource(curve, cpus=cpus, processes=lambda: [raylet], name=name,
                                 curve_label=curve_label, clock=time.time)
    else:
        try:  # measured sources (RAPL, NVML) when the node has them, with its curve as the fallback
            from tao_core.telemetry.detect import detect

            det = detect(power_curve=curve, cpus=cpus)
            if det.measured:
                return _WallClock(det.source())
            det.close()
        except Exception as e:  # noqa: BLE001 - fall back to the model
            log.info("tao sampler: detect() failed (%s); using the node type's curve", e)
    return ModeledSource(curve, cpus=cpus, processes=None, name=name, curve_label=curve_label,
                         clock=time.time)


class _WallClock(EnergySource):
    """Wraps a source so its readings carry wall-clock times."""

    def __init__(self, inner: EnergySource) -> None:
        self.inner = inner
        self.kind = inner.kind

    def read(self):
        from tao_core.telemetry.base import Reading

        r = self.inner.read()
        return Reading(t_s=time.time(), domains=r.domains)

    def close(self) -> None:
        self.inner.close()


@ray.remote(num_cpus=0, max_restarts=-1, enable_task_events=False)
class NodeSampler:
    """Samples one node's energy every ``interval_s`` seconds (see module doc)."""

    def __init__(self, token: str, node_id: str, curve_points: tuple, cpus: float, shared_machine: bool,
                 interval_s: float, node_type: str, idle_w: float,
                 push_every_s: float = 0.5, settle_every_s: float = 5.0) -> None:
        self._token = token
        self.node_id = node_id
        self.node_type = node_type
        self.cpus = max(float(cpus), 1e-3)
        self.idle_w = float(idle_w)
        self.settle_every_s = settle_every_s
        self.interval_s = interval_s
        self.push_every_s = push_every_s
        self.source = make_source(PowerCurve(tuple(curve_points)), self.cpus, shared_machine,
                                  name="node", curve_label=f"{node_type} power curve")
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()  # one reading at a time: the loop and read_now
        self._timeline: list[TimelineRow] = []
        self._spans: list[SpanRow] = []
        self._unsettled: list[SpanRow] = []  # spans whose end is after the settled instant
        self._running: dict[int, tuple[float, float]] = {}  # worker pid -> (heard at, oldest running start)
        self._settled_idx = 0  # index in self._timeline of the last settled reading
        self._tl_base = 0  # absolute index of self._timeline[0] (older rows were dropped)
        self._sp_base = 0  # absolute index of self._spans[0]
        #: a new value each time Ray (re)starts this actor: its counters and indexes start afresh
        self.incarnation = uuid.uuid4().hex
        self.settled_j = {"tasks": 0.0, "idle": 0.0}
        self.refused = 0
        self._stop = threading.Event()
        self._controller = None
        self._temperature_k = None
        self._metrics = _Metrics(node_id)
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="tao-sampler", daemon=True)
        self._thread.start()

    # --- sampling ---------------------------------------------------------------------
    def _sample(self) -> TimelineRow:
        """Read the source and append the reading; serialized, so that the timeline stays in
        time order and the source is never read from two threads at once."""
        with self._read_lock:
            return self._record(self.source.read())

    def _record(self, r: Reading) -> TimelineRow:
        top = [d for d in r.domains.values() if d.parent is None]
        powers = [d.power_w for d in top if d.power_w is not None]
        temps = [d.temperature_k for d in r.domains.values() if d.temperature_k is not None]
        self._temperature_k = max(temps) if temps else None
        row = TimelineRow(
            r.t_s, sum(d.energy_j for d in top), sum(powers) if powers else None,
            getattr(self.source, "last_utilization", None),
            sys.intern("+".join(sorted({str(d.source) for d in top})) or "none"),
            sys.intern("; ".join(dict.fromkeys(d.method for d in top))),
            max((d.uncertainty for d in top), default=0.0))
        with self._lock:
            self._timeline.append(row)
            if len(self._timeline) > MAX_ROWS:
                drop = min(len(self._timeline) - MAX_ROWS, self._settled_idx)
                del self._timeline[:drop]
                self._tl_base += drop
                self._settled_idx -= drop
        return row

    def _loop(self) -> None:
        last_push = 0.0
        last_settle = time.time()
        while not self._stop.wait(self.interval_s):
            if time.time() - last_settle >= self.settle_every_s:
                last_settle = time.time()
                try:
                    self._settle()
                except Exception as e:  # noqa: BLE001 - keep sampling
                    log.warning("tao sampler %s: live attribution failed: %s", self.node_id[:12], e)
            try:
                row = self._sample()
            except Exception as e:  # noqa: BLE001 - keep sampling
                log.warning("tao sampler %s: read failed: %s", self.node_id[:12], e)
                continue
            self._metrics.power(row)
            if row.t_s - last_push >= self.push_every_s:
                last_push = row.t_s
                self._push(row)

    def _push(self, row: TimelineRow) -> None:
        """Send the latest power and utilization to the controller actor (fire and forget)."""
        try:
            if self._controller is None:
                self._controller = ray.get_actor(CONTROLLER_NAME, namespace=NAMESPACE)
            self._controller.observe.remote(self._token, self.node_id, row.t_s, row.power_w, row.util,
                                            self._temperature_k)
        except Exception:  # noqa: BLE001 - controller down: it will be looked up again
            self._controller = None

    def _check(self, token: Any) -> None:
        try:
            check_token(f"tao-sampler {self.node_id[:12]}", self._token, token)
        except PermissionError:
            self.refused += 1
            raise

    # --- API (the session token first) -------------------------------------------------
    def ping(self, token: str) -> str:
        self._check(token)
        return self.node_id

    def read_now(self, token: str) -> TimelineRow:
        """Take a reading now and return it (closes the timeline at this instant)."""
        self._check(token)
        return self._sample()

    def timeline(self, token: str, since: int = 0) -> tuple[str, int, list[TimelineRow]]:
        """(incarnation, first, rows): the readings from absolute index ``since`` on, where
        ``first`` is the absolute index of the first row (above ``since`` when older rows
        were dropped). A changed ``incarnation`` means the actor was restarted: indexes and
        the cumulative energy start again from zero."""
        self._check(token)
        with self._lock:
            first = max(since, self._tl_base)
            return self.incarnation, first, list(self._timeline[first - self._tl_base:])

    def spans(self, token: str, since: int = 0) -> tuple[str, int, list[SpanRow]]:
        """(incarnation, first, spans) from absolute index ``since`` on; spans before
        ``since`` are taken as fetched and dropped once settled."""
        self._check(token)
        with self._lock:
            first = max(since, self._sp_base)
            out = list(self._spans[first - self._sp_base:])
            drop = min(since, self._sp_base + len(self._spans)) - self._sp_base
            if drop > 0:
                del self._spans[:drop]
                self._sp_base += drop
            return self.incarnation, first, out

    def add_spans(self, token: str, spans: list[SpanRow], pid: Optional[int] = None,
                  running_since: Optional[float] = None) -> None:
        """Spans reported by TAO-wrapped tasks on this node, by worker process ``pid``, with
        the start (wall-clock s) of its oldest task still running (None: none runs)."""
        self._check(token)
        with self._lock:
            self._spans.extend(spans)
            self._unsettled.extend(spans)
            if pid is not None:
                if running_since is None:
                    self._running.pop(pid, None)
                else:
                    self._running[pid] = (time.time(), float(running_since))

    def settle(self, token: str) -> tuple[float, float]:
        """Attribute the newly settled stretch now (see module doc); (tasks J, idle J)."""
        self._check(token)
        return self._settle()

    def _settle(self, now: Optional[float] = None) -> tuple[float, float]:
        from tao_core.attribution import attribute
        from tao_ray.energy import reading_of, wrapper_rows
        from tao_core.task_rows import spans_from_rows

        now = time.time() if now is None else now
        with self._lock:
            bound = now - SPAN_LAG_S
            for pid, (heard, since) in list(self._running.items()):
                if now - heard > STALE_S:
                    del self._running[pid]
                else:
                    bound = min(bound, since)
            end = self._settled_idx
            while end + 1 < len(self._timeline) and self._timeline[end + 1].t_s <= bound:
                end += 1
            if end <= self._settled_idx:
                return 0.0, 0.0
            rows = self._timeline[self._settled_idx:end + 1]
            t0, t1 = rows[0].t_s, rows[-1].t_s
            spans = [sp for sp in self._unsettled if sp.end_s > t0 and sp.start_s < t1]
            self._unsettled = [sp for sp in self._unsettled if sp.end_s > t1]
            self._settled_idx = end
        att = attribute({self.node_id: [reading_of(r) for r in rows]}, spans_from_rows(wrapper_rows(spans))[0],
                        idle_w={self.node_id: self.idle_w}, node_cpus={self.node_id: self.cpus})
        tasks_j = att.total_j - att.idle_j
        self.settled_j["tasks"] += tasks_j
        self.settled_j["idle"] += att.idle_j
        self._metrics.settled(att, rows[-1].source)
        return tasks_j, att.idle_j

    def settled(self, token: str) -> dict[str, Any]:
        """Joules attributed so far to tasks and to idle, the settled instant (wall-clock
        s), and what the sampler holds."""
        self._check(token)
        with self._lock:
            t = self._timeline[self._settled_idx].t_s if self._timeline else None
            return {**self.settled_j, "t_s": t, "running_workers": len(self._running),
                    "rows_held": len(self._timeline), "spans_held": len(self._spans),
                    "readings": self._tl_base + len(self._timeline), "refused_calls": self.refused}

    def info(self, token: str) -> dict[str, Any]:
        self._check(token)
        return {"node_id": self.node_id, "node_type": self.node_type, "source": str(self.source.kind),
                "method": getattr(self.source, "method", ""), "incarnation": self.incarnation}


class _Metrics:
    """The sampler's Ray metrics (``tao_`` names); a no-op, with one logged warning, where
    Ray's metrics cannot be created."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        try:
            from ray.util.metrics import Counter, Gauge

            self._power = Gauge("tao_node_power_watts", description="Node power (W) as TAO reads or models it",
                                tag_keys=("node_id", "source"))
            self._task_j = Counter("tao_task_energy_joules",
                                   description="Energy attributed to TAO tasks once settled (J)",
                                   tag_keys=("group", "job", "source"))
            self._idle_j = Counter("tao_node_idle_energy_joules",
                                   description="Node energy attributed to no task once settled (J)",
                                   tag_keys=("node_id", "source"))
            self.on = True
        except Exception as e:  # noqa: BLE001 - metrics are optional
            log.warning("tao sampler %s: Ray metrics unavailable (%s); no tao_ node metrics", node_id[:12], e)
            self.on = False

    def power(self, row: TimelineRow) -> None:
        if self.on and row.power_w is not None:
            self._power.set(row.power_w, tags={"node_id": self.node_id, "source": row.source})

    def settled(self, att: Any, source: str) -> None:
        if not self.on:
            return
        if len(att.tasks):
            by = att.tasks.groupby(["group", "job"], dropna=False)["energy_j"].sum()
            for (group, job), e in by.items():
                if e > 0:
                    self._task_j.inc(float(e), tags={"group": str(group), "job": str(job), "source": source})
        if att.idle_j > 0:
            self._idle_j.inc(float(att.idle_j), tags={"node_id": self.node_id, "source": source})
