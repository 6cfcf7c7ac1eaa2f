"""The TAO demo that ``make demo`` runs: telemetry, Ray and Dask with and without TAO, and
the audit trail of a simulated run. Outputs go to ``demo-output/``.

1. ``tao probe`` and a CPU workload measured in named energy windows
   (``examples/monitor_workload.py``), about 10 s.
2. Ray: a local heterogeneous cluster, the same workload with Ray's default scheduling and
   with TAO (``examples/ray_energy_aware.py``), about a minute.
3. Dask: a LocalCluster of worker processes with different power curves, the same graph with
   Dask's default and with TAO (``examples/dask_energy_aware.py``), about a minute.
4. What-if and audit: ``tao simulate`` of every policy on a small cluster with a signed
   ledger (the workload's tasks count the records and samples they process), ``tao audit
   verify`` of that ledger, ``tao report build`` of TAO's run (JSON, checked against the
   ledger, and HTML with the energy per unit of work, the SCI and the Model Documentation
   Form section), the form's items alone (``--format mdf``), and a BoAmps export.

Each part runs in its own process, so one engine's state never leaks into the next. Every
energy figure here is modeled (this kind of machine has no RAPL or GPU counters) unless the
probe in part 1 says otherwise.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "demo-output"


def step(title: str, cmd: list[str]) -> int:
    print(f"\n=== {title}\n$ {' '.join(Path(c).name if c == sys.executable else c for c in cmd)}", flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    py = sys.executable
    tao = [py, "-m", "tao_core.cli.main"]
    ledger = OUT / "sim-ledger.jsonl"
    report = OUT / "tao-report.json"
    steps = [
        ("1. Telemetry: what this machine offers, and a monitored workload", [py, "examples/monitor_workload.py"]),
        ("2. Ray: default scheduling vs TAO", [py, "examples/ray_energy_aware.py", "--report", str(OUT / "ray-report.json")]),
        ("3. Dask: default placement vs TAO", [py, "examples/dask_energy_aware.py", "--report", str(OUT / "dask-report.json")]),
        ("4a. What-if: every policy on a small cluster, with a signed ledger",
         tao + ["simulate", "--cluster", "examples/cluster_small.json", "--workload", "examples/workload_small.csv",
                "--json", str(OUT / "simulate.json"), "--plot", str(OUT / "simulate.png"), "--ledger", str(ledger)]),
        ("4b. Verify the ledger against its public key",
         tao + ["audit", "verify", str(ledger), "--pubkey", str(ledger) + ".pub"]),
        ("4c. The energy report of TAO's simulated run (per unit of work, SCI, Model Documentation Form)",
         tao + ["report", "build", "--ledger", str(ledger), "--policy", "tao", "--out", str(report)]),
        ("4d. Check every figure of the report against the ledger",
         tao + ["report", "validate", str(report), "--ledger", str(ledger), "--pubkey", str(ledger) + ".pub"]),
        ("4e. The report as HTML", tao + ["report", "render", str(report), "--format", "html",
                                          "--out", str(OUT / "tao-report.html")]),
        ("4f. The Model Documentation Form items, to paste into the form",
         tao + ["report", "render", str(report), "--format", "mdf", "--out", str(OUT / "tao-mdf.md")]),
        ("4g. The report as BoAmps (Boavizta's format), with the fields only the user knows from a context file",
         tao + ["report", "export", str(report), "--format", "boamps", "--context", "examples/boamps_context.json",
                "--out", str(OUT / "tao-boamps.json")]),
    ]
    failed = [title for title, cmd in steps if step(title, cmd) != 0]
    print(f"\nOutputs in {OUT.relative_to(ROOT)}/: " + ", ".join(sorted(p.name for p in OUT.iterdir())))
    if failed:
        print("failed: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
