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

Memory. Readers (the drivers running TAO) fetch readings and spans by absolute index,
naming themselves; the sampler keeps only what some reader seen in the last
``READER_GONE_S`` has not fetched yet and what is not settled yet, so a long-lived
sampler holds minutes of rows, not the whole session.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Optional

import psutil
import ray

from tao_core.power.curve import PowerCurve
from tao_core.telemetry.base import EnergySource

log = logging.getLogger("tao_ray")

NAMESPACE = "tao"
#: seconds from a task's end until its span has surely reached the sampler
SPAN_LAG_S = 1.0
#: seconds of silence after which a worker process that said it runs a task is taken as gone
STALE_S = 10.0
#: seconds without a fetch after which a reader (a driver) no longer holds rows in memory
READER_GONE_S = 600.0


def sampler_name(node_id: str) -> str:
    """Actor name of the sampler of ``node_id``."""
    return f"tao-sampler-{node_id}"


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


@ray.remote(num_cpus=0, max_restarts=-1)
class NodeSampler:
    """Samples one node's energy every ``interval_s`` seconds (see module doc)."""

    def __init__(self, node_id: str, curve_points: tuple, cpus: float, shared_machine: bool,
                 interval_s: float, controller_name: str, node_type: str, idle_w: float,
                 push_every_s: float = 0.5, settle_every_s: float = 5.0) -> None:
        self.node_id = node_id
        self.node_type = node_type
        self.cpus = max(float(cpus), 1e-3)
        self.idle_w = float(idle_w)
        self.settle_every_s = settle_every_s
        self.interval_s = interval_s
        self.controller_name = controller_name
        self.push_every_s = push_every_s
        self.source = make_source(PowerCurve(tuple(curve_points)), max(cpus, 1e-3), shared_machine,
                                  name="node", curve_label=f"{node_type} power curve")
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()  # one reading at a time: the loop and read_now
        self._timeline: list[tuple] = []  # (t_s, total_j, power_w, util, source, method, uncertainty)
        self._spans: list[tuple] = []
        self._unsettled: list[tuple] = []  # spans whose end is after the settled instant
        self._running: dict[int, tuple[float, float]] = {}  # worker pid -> (heard at, oldest running start)
        self._settled_idx = 0  # index in self._timeline of the last settled reading
        self._tl_base = 0  # absolute index of self._timeline[0] (older rows were dropped)
        self._sp_base = 0  # absolute index of self._spans[0]
        self._readers: dict[str, tuple[float, int, int]] = {}  # reader -> (seen at, next reading, next span)
        #: a new value each time Ray (re)starts this actor: its counters and indexes start afresh
        self.incarnation = uuid.uuid4().hex
        self.settled_j = {"tasks": 0.0, "idle": 0.0}
        self._stop = threading.Event()
        self._controller = None
        self._temperature_k = None
        self._gauge = self._task_j = self._idle_j = None
        try:
            from ray.util.metrics import Counter, Gauge

            self._gauge = Gauge("tao_node_power_watts", description="Node power (W) as TAO reads or models it",
                                tag_keys=("node_id", "source"))
            self._task_j = Counter("tao_task_energy_joules",
                                   description="Energy attributed to TAO tasks once settled (J)",
                                   tag_keys=("group", "job", "source"))
            self._idle_j = Counter("tao_node_idle_energy_joules",
                                   description="Node energy attributed to no task once settled (J)",
                                   tag_keys=("node_id", "source"))
        except Exception as e:  # noqa: BLE001 - metrics are optional
            log.warning("tao sampler %s: Ray metrics unavailable (%s); no tao_ node metrics", node_id[:12], e)
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="tao-sampler", daemon=True)
        self._thread.start()

    # --- sampling ---------------------------------------------------------------------
    def _sample(self) -> tuple:
        """Read the source and append the reading; serialized, so that the timeline stays in
        time order and the source is never read from two threads at once."""
        with self._read_lock:
            return self._record(self.source.read())

    def _record(self, r) -> tuple:
        top = [d for d in r.domains.values() if d.parent is None]
        total = sum(d.energy_j for d in top)
        power = sum(d.power_w for d in top if d.power_w is not None) if any(
            d.power_w is not None for d in top) else None
        src = "+".join(sorted({str(d.source) for d in top})) or "none"
        method = "; ".join(dict.fromkeys(d.method for d in top))
        unc = max((d.uncertainty for d in top), default=0.0)
        util = getattr(self.source, "last_utilization", None)
        temps = [d.temperature_k for d in r.domains.values() if d.temperature_k is not None]
        self._temperature_k = max(temps) if temps else None
        row = (r.t_s, total, power, util, src, method, unc)
        with self._lock:
            self._timeline.append(row)
        return row

    def _loop(self) -> None:
        last_push = 0.0
        last_settle = time.time()
        while not self._stop.wait(self.interval_s):
            if time.time() - last_settle >= self.settle_every_s:
                last_settle = time.time()
                try:
                    self.settle()
                except Exception as e:  # noqa: BLE001 - keep sampling
                    log.warning("tao sampler %s: live attribution failed: %s", self.node_id[:12], e)
            try:
                row = self._sample()
            except Exception as e:  # noqa: BLE001 - keep sampling
                log.warning("tao sampler %s: read failed: %s", self.node_id[:12], e)
                continue
            if self._gauge is not None and row[2] is not None:
                try:
                    self._gauge.set(row[2], tags={"node_id": self.node_id, "source": row[4]})
                except Exception:  # noqa: BLE001
                    pass
            if row[0] - last_push >= self.push_every_s:
                last_push = row[0]
                self._push(row)

    def _push(self, row: tuple) -> None:
        """Send the latest power and utilization to the controller actor (fire and forget)."""
        try:
            if self._controller is None:
                self._controller = ray.get_actor(self.controller_name, namespace=NAMESPACE)
            self._controller.observe.remote(self.node_id, row[0], row[2], row[3], self._temperature_k)
        except Exception:  # noqa: BLE001 - controller down: it will be looked up again
            self._controller = None

    # --- API --------------------------------------------------------------------------
    def ping(self) -> str:
        return self.node_id

    def read_now(self) -> tuple:
        """Take a reading now and return it (closes the timeline at this instant)."""
        return self._sample()

    def timeline(self, since: int = 0, reader: Optional[str] = None) -> tuple[str, int, list[tuple]]:
        """(incarnation, first, rows): the readings from absolute index ``since`` on, (t_s,
        total_j, power_w, util, source, method, uncertainty), where ``first`` is the absolute
        index of the first row (above ``since`` when older rows were dropped: see the module
        doc on memory). A named ``reader`` is taken to hold everything before ``since``. A
        changed ``incarnation`` means the actor was restarted: indexes and the cumulative
        energy start again from zero."""
        with self._lock:
            first = max(since, self._tl_base)
            out = list(self._timeline[first - self._tl_base:])
            if reader is not None:
                _seen, _tl, sp = self._readers.get(reader, (0.0, first, self._sp_base))
                self._readers[reader] = (time.time(), first, sp)
                self._trim()
            return self.incarnation, first, out

    def _trim(self) -> None:
        """Drop the rows every live reader has fetched (and, for readings, that are settled);
        call with the lock held."""
        now = time.time()
        for r, (seen, _tl, _sp) in list(self._readers.items()):
            if now - seen > READER_GONE_S:
                del self._readers[r]
        if not self._readers:
            return
        tl_keep = min(min(tl for _s, tl, _p in self._readers.values()), self._tl_base + self._settled_idx)
        drop = tl_keep - self._tl_base
        if drop > 0:
            del self._timeline[:drop]
            self._tl_base += drop
            self._settled_idx -= drop
        sp_drop = min(sp for _s, _t, sp in self._readers.values()) - self._sp_base
        if sp_drop > 0:
            del self._spans[:sp_drop]
            self._sp_base += sp_drop

    def add_spans(self, spans: list[tuple], pid: Optional[int] = None, running_since: Optional[float] = None) -> None:
        """Spans reported by TAO-wrapped tasks on this node, by worker process ``pid``, with
        the start (wall-clock s) of its oldest task still running (None: none runs)."""
        with self._lock:
            self._spans.extend(spans)
            self._unsettled.extend(spans)
            if pid is not None:
                if running_since is None:
                    self._running.pop(pid, None)
                else:
                    self._running[pid] = (time.time(), float(running_since))

    def settle(self, now: Optional[float] = None) -> tuple[float, float]:
        """Attribute the newly settled stretch of the timeline (see module doc) and add it
        to the energy counters. Returns the joules given to (tasks, idle) this time."""
        from tao_core.attribution import attribute
        from tao_ray.energy import reading_of, unique_spans

        now = time.time() if now is None else now
        with self._lock:
            bound = now - SPAN_LAG_S
            for pid, (heard, since) in list(self._running.items()):
                if now - heard > STALE_S:
                    del self._running[pid]
                else:
                    bound = min(bound, since)
            end = self._settled_idx
            while end + 1 < len(self._timeline) and self._timeline[end + 1][0] <= bound:
                end += 1
            if end <= self._settled_idx:
                return 0.0, 0.0
            rows = self._timeline[self._settled_idx:end + 1]
            t0, t1 = rows[0][0], rows[-1][0]
            spans = [sp for sp in self._unsettled if sp[3] > t0 and sp[2] < t1]
            self._unsettled = [sp for sp in self._unsettled if sp[3] > t1]
            self._settled_idx = end
        att = attribute({self.node_id: [reading_of(r) for r in rows]}, unique_spans(spans),
                        idle_w={self.node_id: self.idle_w}, node_cpus={self.node_id: self.cpus})
        src = rows[-1][4]
        tasks_j = att.total_j - att.idle_j
        self.settled_j["tasks"] += tasks_j
        self.settled_j["idle"] += att.idle_j
        try:
            if self._task_j is not None and len(att.tasks):
                by = att.tasks.groupby(["group", "job"], dropna=False)["energy_j"].sum()
                for (group, job), e in by.items():
                    if e > 0:
                        self._task_j.inc(float(e), tags={"group": str(group), "job": str(job), "source": src})
            if self._idle_j is not None and att.idle_j > 0:
                self._idle_j.inc(float(att.idle_j), tags={"node_id": self.node_id, "source": src})
        except Exception:  # noqa: BLE001 - metrics are optional
            pass
        return tasks_j, att.idle_j

    def settled(self) -> dict[str, float]:
        """Joules attributed so far to tasks and to idle, and the settled instant (wall-clock s)."""
        with self._lock:
            t = self._timeline[self._settled_idx][0] if self._timeline else None
            return {**self.settled_j, "t_s": t, "running_workers": len(self._running),
                    "rows_held": len(self._timeline), "spans_held": len(self._spans)}

    def spans(self, since: int = 0, reader: Optional[str] = None) -> tuple[str, int, list[tuple]]:
        """(incarnation, first, spans) from absolute index ``since`` on, as :meth:`timeline`."""
        with self._lock:
            first = max(since, self._sp_base)
            out = list(self._spans[first - self._sp_base:])
            if reader is not None:
                _seen, tl, _sp = self._readers.get(reader, (0.0, self._tl_base, first))
                self._readers[reader] = (time.time(), tl, first)
                self._trim()
            return self.incarnation, first, out

    def info(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "node_type": self.node_type, "source": str(self.source.kind),
                "method": getattr(self.source, "method", ""), "readings": self._tl_base + len(self._timeline)}

    def stop(self) -> None:
        self._stop.set()
