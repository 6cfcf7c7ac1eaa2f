"""TAO's online GPU power-limit choice against the default and the best limit in hindsight,
on measured data.

Data: the Zeus NSDI'23 traces (ml-energy/zeus, Apache-2.0,
``examples/research_reproducibility/zeus_nsdi23/trace/summary_power_{v100,a40,p100,rtx6000}.csv``),
copied into ``tao_core/data/zeus_power_limits_<gpu>.csv``: time per epoch (s) and average power (W) of DNN
training measured at each GPU power limit. Energy per epoch = time per epoch x average power.

One trace is a (GPU, dataset, network, batch size, optimizer). Its job is modeled as
``--epochs`` epochs cut into ``--slices`` units per epoch. The learner
(:class:`tao_core.control.power_limits.PowerLimitLearner`, the object the controller uses)
chooses a limit for each unit and is then told that unit's time and energy, with seeded
multiplicative measurement noise (``--noise``, relative standard deviation) standing for what
a real counter reading over a short window shows. The energy and time TAO is charged are the
true figures of the limits it chose, exploration included.

Compared, per trace and over all traces:
- default: every unit at the GPU's highest limit (what runs when nobody lowers it);
- best in hindsight: the least-energy limit among those no more than 10 % slower per epoch
  than the default, for the whole job;
- TAO: the learner's choices.

``captured_share`` = sum over traces of (default - TAO energy) / sum of (default - best energy),
averaged over ``--seeds`` noise seeds (the minimum is reported too).
``max_slowdown`` = worst over traces and seeds of TAO's mean time per epoch / the default's, minus 1.
Goal: captured_share >= 0.80 with max_slowdown <= 0.10.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tao_core.control.power_limits import PowerLimitLearner
from results_file import write_json  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tao_core" / "data"
KEYS = ["dataset", "network", "batch_size", "optimizer"]


def load_traces(data_dir: Path = DATA) -> pd.DataFrame:
    """All four GPUs' summaries in one frame with a ``gpu`` column."""
    frames = []
    for path in sorted(data_dir.glob("zeus_power_limits_*.csv")):
        df = pd.read_csv(path)
        df["gpu"] = path.stem.removeprefix("zeus_power_limits_")
        frames.append(df)
    if not frames:
        raise SystemExit(f"no zeus_power_limits_*.csv under {data_dir}")
    out = pd.concat(frames, ignore_index=True)
    out["energy_j"] = out["time_per_epoch"] * out["average_power"]
    return out


def run_trace(rows: pd.DataFrame, gpu_max_limit: float, *, epochs: int, slices: int,
              noise: float, max_slowdown: float, rng: np.random.Generator) -> dict | None:
    """Simulate one job. Returns None when the trace lacks the GPU's highest limit."""
    by_limit = {float(r.power_limit): (float(r.time_per_epoch), float(r.energy_j)) for r in rows.itertuples()}
    if gpu_max_limit not in by_limit:
        return None
    t_def, e_def = by_limit[gpu_max_limit]
    ok = {lim: v for lim, v in by_limit.items() if v[0] <= (1 + max_slowdown) * t_def}
    best_lim = min(ok, key=lambda lim: ok[lim][1])

    learner = PowerLimitLearner(sorted(by_limit), max_slowdown=max_slowdown)
    units = epochs * slices
    tao_t = tao_e = 0.0
    explored = 0
    for _ in range(units):
        lim = learner.next_limit("job")
        if learner.exploring("job"):
            explored += 1
        t_unit, e_unit = (x / slices for x in by_limit[lim])
        tao_t += t_unit
        tao_e += e_unit
        m_t = t_unit * (1 + noise * rng.standard_normal())
        m_e = e_unit * (1 + noise * rng.standard_normal())
        learner.observe("job", lim, max(m_t, 1e-9), max(m_e, 0.0))
    final = learner.best("job")
    return {
        "default_limit_w": gpu_max_limit,
        "best_limit_w": best_lim,
        "tao_final_limit_w": final,
        "units_exploring": explored,
        "default_energy_j": e_def * epochs,
        "best_energy_j": ok[best_lim][1] * epochs,
        "tao_energy_j": tao_e,
        "default_time_s": t_def * epochs,
        "tao_time_s": tao_t,
        "tao_saving": 1 - tao_e / (e_def * epochs),
        "best_saving": 1 - ok[best_lim][1] / e_def,
        "tao_slowdown": tao_t / (t_def * epochs) - 1,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=str(HERE / "results" / "gpu_power_limits.json"), help="JSON output path")
    ap.add_argument("--epochs", type=int, default=10, help="epochs per training job (default 10)")
    ap.add_argument("--slices", type=int, default=20, help="units of work per epoch (default 20: 5 %% of an epoch each)")
    ap.add_argument("--noise", type=float, default=0.02, help="relative measurement noise (default 0.02)")
    ap.add_argument("--max-slowdown", type=float, default=0.10, help="allowed slowdown per epoch (default 0.10)")
    ap.add_argument("--seed", type=int, default=0, help="first RNG seed")
    ap.add_argument("--seeds", type=int, default=5, help="number of seeds (default 5)")
    args = ap.parse_args(argv)

    df = load_traces()
    gpu_max = df.groupby("gpu")["power_limit"].max().astype(float).to_dict()
    per_seed, details = [], []
    for seed in range(args.seed, args.seed + args.seeds):
        rng = np.random.default_rng(seed)
        rows, skipped = [], 0
        for (gpu, *key), grp in df.groupby(["gpu", *KEYS], sort=True):
            res = run_trace(grp, gpu_max[gpu], epochs=args.epochs, slices=args.slices,
                            noise=args.noise, max_slowdown=args.max_slowdown, rng=rng)
            if res is None:
                skipped += 1
                continue
            rows.append({"gpu": gpu, **dict(zip(KEYS, key)), "seed": seed, **res})
        res = pd.DataFrame(rows)
        saved_tao = float((res.default_energy_j - res.tao_energy_j).sum())
        saved_best = float((res.default_energy_j - res.best_energy_j).sum())
        per_seed.append({
            "seed": seed, "traces": len(res), "skipped": skipped,
            "captured_share": saved_tao / saved_best if saved_best > 0 else float("nan"),
            "max_slowdown": float(res.tao_slowdown.max()),
            "energy_saved_tao": saved_tao / float(res.default_energy_j.sum()),
            "energy_saved_best": saved_best / float(res.default_energy_j.sum()),
        })
        details.append(res)
    seeds = pd.DataFrame(per_seed)
    res = details[0]
    summary = {
        "traces": int(seeds.traces.iloc[0]),
        "traces_skipped_no_default_limit": int(seeds.skipped.iloc[0]),
        "captured_share": float(seeds.captured_share.mean()),
        "captured_share_min": float(seeds.captured_share.min()),
        "max_slowdown": float(seeds.max_slowdown.max()),
        "energy_saved_tao": float(seeds.energy_saved_tao.mean()),
        "energy_saved_best": float(seeds.energy_saved_best.mean()),
        "seeds": per_seed,
        "assumptions": {"epochs": args.epochs, "slices_per_epoch": args.slices, "noise": args.noise,
                        "max_slowdown_allowed": args.max_slowdown},
        "source": "measured time and power per limit (Zeus NSDI'23 traces); job length and measurement noise modeled",
    }

    by_gpu = res.groupby("gpu").apply(
        lambda g: pd.Series({
            "traces": len(g),
            "saved_tao_%": 100 * (1 - g.tao_energy_j.sum() / g.default_energy_j.sum()),
            "saved_best_%": 100 * (1 - g.best_energy_j.sum() / g.default_energy_j.sum()),
            "captured_%": 100 * (g.default_energy_j - g.tao_energy_j).sum()
            / max((g.default_energy_j - g.best_energy_j).sum(), 1e-12),
            "max_slowdown_%": 100 * g.tao_slowdown.max(),
        }), include_groups=False)
    print(f"per GPU, seed {args.seed}:")
    print(by_gpu.round(1).to_string())
    print("\nper seed:")
    print(seeds.round(3).to_string(index=False))
    print(f"\nall {summary['traces']} traces (skipped {summary['traces_skipped_no_default_limit']} without the "
          f"highest limit), {args.seeds} seeds, noise {args.noise:.0%}:")
    print(f"energy saved: TAO {100 * summary['energy_saved_tao']:.1f} %, best in hindsight "
          f"{100 * summary['energy_saved_best']:.1f} %")
    print(f"captured_share {summary['captured_share']:.3f} (min {summary['captured_share_min']:.3f}; goal >= 0.80), "
          f"max_slowdown {100 * summary['max_slowdown']:.1f} % (goal <= 10 %)")

    write_json({**summary, "per_gpu": by_gpu.reset_index().to_dict("records"),
                "traces_detail": res.to_dict("records")}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
