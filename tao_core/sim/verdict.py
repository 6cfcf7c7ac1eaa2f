"""TAO against each baseline, judged by energy and by service.

A baseline that did not run every task has the worse service whatever its energy
(``incomplete``). Against one that did, TAO (its run at the configured lambda) ``beats`` it
with less energy at a p95 wait no worse than the baseline's plus :data:`WAIT_SLACK_S` (the
wait of the tasks without a deadline; tasks with one are judged by their deadline: TAO
may miss no more of them than the baseline).
Where it does not (a baseline that trades waits for energy, or one with shorter waits), a
point of TAO's lambda sweep that has both less energy and a p95 wait no worse than the
baseline's plus the slack ``dominates`` it (Pareto dominance); otherwise it is ``not
beaten``, with the figures.

Units: joules, seconds.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional

#: a p95 wait within this many seconds of the baseline's counts as no worse
WAIT_SLACK_S = 1.0
#: the margin by which TAO should be below the best baseline (the goal of the scenarios)
TARGET_MARGIN = 0.05

BEATEN, DOMINATED, NOT_BEATEN, INCOMPLETE = "beaten", "dominated", "not beaten", "incomplete"


@dataclass(frozen=True)
class Verdict:
    """TAO against one baseline. ``by``: which TAO run settles it ("tao", or "tao
    lambda=X" from the sweep; None when none does); ``energy_ratio``: that run's energy
    over the baseline's (TAO's own run when none does)."""

    baseline: str
    outcome: str
    by: Optional[str]
    energy_ratio: float
    tao_p95_s: float
    baseline_p95_s: float
    baseline_energy_j: float

    def line(self) -> str:
        """One line for the table."""
        base = f"{self.baseline}: {self.outcome}"
        if self.outcome == INCOMPLETE:
            return base + " (it did not run every task)"
        if self.outcome == NOT_BEATEN:
            return (base + f" (tao {self.energy_ratio:.3f}x its energy at p95 wait {self.tao_p95_s:.1f} s "
                    f"against {self.baseline_p95_s:.1f} s)")
        return (base + f" by {self.by}: {100 * (1 - self.energy_ratio):.1f} % less energy at p95 wait "
                f"{self.tao_p95_s:.1f} s against {self.baseline_p95_s:.1f} s")


def complete(m: Mapping[str, Any]) -> bool:
    """Whether a run's summary says every task ran."""
    return int(m["tasks_completed"]) >= int(m["tasks_total"])


def _wait(m: Mapping[str, Any]) -> float:
    """The wait a run is judged by: the p95 of the tasks without a deadline (a task with a
    deadline said it may wait; its service is the deadline)."""
    return float(m.get("service_wait_p95_s", m["wait_p95_s"]))


def _settles(t: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return (complete(t) and t["energy_j"] < b["energy_j"]
            and _wait(t) <= _wait(b) + WAIT_SLACK_S
            and t.get("deadlines_missed", 0) <= b.get("deadlines_missed", 0))


def judge(name: str, b: Mapping[str, Any], tao: Mapping[str, Any],
          sweep: Optional[Mapping[str, Mapping[str, Any]]] = None) -> Verdict:
    """The verdict on baseline ``name`` (summary ``b``) from TAO's run and its sweep
    (lambda -> summary)."""
    def v(outcome: str, by: Optional[str], t: Mapping[str, Any]) -> Verdict:
        ratio = t["energy_j"] / b["energy_j"] if b["energy_j"] > 0 else math.inf
        return Verdict(name, outcome, by, ratio, _wait(t), _wait(b), float(b["energy_j"]))

    if not complete(b):
        return v(INCOMPLETE, "tao", tao)
    if _settles(tao, b):
        return v(BEATEN, "tao", tao)
    ok = [(m["energy_j"], lam, m) for lam, m in (sweep or {}).items() if _settles(m, b)]
    if ok:
        _, lam, m = min(ok, key=lambda x: x[0])
        return v(DOMINATED, f"tao lambda={lam}", m)
    return v(NOT_BEATEN, None, tao)


def undecided(policies: Mapping[str, Mapping[str, Any]], sweep: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Baselines neither TAO's run nor any sweep point settles yet."""
    tao = policies.get("tao")
    if tao is None:
        return []
    return [n for n, b in policies.items() if n != "tao" and judge(n, b, tao, sweep).outcome == NOT_BEATEN]


def verdicts(policies: Mapping[str, Mapping[str, Any]],
             sweep: Optional[Mapping[str, Mapping[str, Any]]] = None) -> list[Verdict]:
    """A verdict per baseline (every policy but ``tao``); empty without a TAO run."""
    tao = policies.get("tao")
    if tao is None:
        return []
    return [judge(n, b, tao, sweep) for n, b in policies.items() if n != "tao"]


def goals(policies: Mapping[str, Mapping[str, Any]], sweep: Optional[Mapping[str, Mapping[str, Any]]] = None,
          *, wait_reference: str = "ray-default-autoscale", margin: float = TARGET_MARGIN) -> dict[str, Any]:
    """The scenario goals: TAO's energy the lowest of every policy that ran all its tasks,
    at a p95 wait no worse than ``wait_reference``'s plus the slack, ``margin`` below the
    best such baseline, and every baseline beaten or dominated by the sweep."""
    tao = policies["tao"]
    done = {n: m for n, m in policies.items() if n != "tao" and complete(m)}
    best = min(done, key=lambda n: done[n]["energy_j"]) if done else None
    ref = policies.get(wait_reference)
    vs = verdicts(policies, sweep)
    out: dict[str, Any] = {
        "tao_energy_j": tao["energy_j"], "tao_wait_p95_s": _wait(tao), "tao_complete": complete(tao),
        "best_baseline": best, "best_baseline_energy_j": done[best]["energy_j"] if best else None,
        "tao_over_best": tao["energy_j"] / done[best]["energy_j"] if best else None,
        "tao_bound_ratio": tao.get("bound_ratio"),
        "lowest": bool(best is None or tao["energy_j"] < done[best]["energy_j"]),
        "margin_goal": margin,
        "margin_met": bool(best is None or tao["energy_j"] <= (1 - margin) * done[best]["energy_j"]),
        "wait_reference": wait_reference,
        "wait_reference_p95_s": _wait(ref) if ref is not None else None,
        "wait_met": bool(ref is None or _wait(tao) <= _wait(ref) + WAIT_SLACK_S),
        "pareto_met": all(x.outcome in (BEATEN, DOMINATED, INCOMPLETE) for x in vs),
        "verdicts": [asdict(x) for x in vs],
    }
    return out
