"""Markdown and HTML renderings of an energy report, with matplotlib plots.

``render_pngs(report)`` draws the plots (PNG bytes per name: ``facility``, ``components``,
``nodes``, ``groups``); ``render_markdown(report, png_names)`` references the PNG files
written beside the Markdown; ``render_html(report)`` embeds them as base64 data URIs, so the
HTML is one self-contained file. Energy is shown in kWh when large, else in kJ or J.
"""
from __future__ import annotations

import base64
import html
import io
import json
import re
from typing import Any, Callable, Mapping, Optional

PLOT_TITLES = {
    "facility": "Where the facility energy went",
    "components": "IT energy by component",
    "nodes": "IT energy by node",
    "groups": "Energy by task group",
}
PART_COLORS = {"dynamic": "#1f78b4", "idle": "#fdbf6f", "boot": "#ff7f00", "off": "#cab2d6"}
PART_LABELS = {"dynamic": "task work", "idle": "idle", "boot": "boot", "off": "off"}
CLASS_COLORS = {"measured": "#1b7837", "modeled": "#d95f02", "replay": "#7570b3", "mixed": "#e6ab02", "unknown": "#999999"}


# ----------------------------------------------------------------------------- formatting
def fmt_energy(j: Optional[float]) -> str:
    """Joules as a readable string with its unit (J, kJ, MJ or kWh)."""
    if j is None:
        return "n/a"
    a = abs(j)
    if a >= 3.6e6:
        return f"{j / 3.6e6:,.3f} kWh"
    if a >= 1e6:
        return f"{j / 1e6:,.3f} MJ"
    if a >= 1e3:
        return f"{j / 1e3:,.2f} kJ"
    return f"{j:,.1f} J"


def fmt_share(s: Optional[float]) -> str:
    return "n/a" if s is None else f"{100.0 * s:.1f} %"


def fmt_num(v: Any, unit: str = "", digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.{digits}f}{(' ' + unit) if unit else ''}"
    return f"{v}{(' ' + unit) if unit else ''}"


def _energy_unit(max_j: float) -> tuple[float, str]:
    if max_j >= 3.6e6:
        return 3.6e6, "kWh"
    if max_j >= 1e6:
        return 1e6, "MJ"
    if max_j >= 1e3:
        return 1e3, "kJ"
    return 1.0, "J"


# ----------------------------------------------------------------------------- plots
def _facility_parts(report: Mapping[str, Any]) -> list[tuple[str, float, str]]:
    """(label, joules, color) pieces of facility energy: task work, idle, boot, other IT,
    facility overhead. Pieces the report lacks are left out."""
    e = report["energy"]
    it = e.get("it_energy_j") or 0.0
    fac = e.get("facility_energy_j") or 0.0
    parts = []
    used = 0.0
    for label, key in (("task work (dynamic)", "dynamic"), ("idle", "idle"), ("boot", "boot"), ("off", "off")):
        v, c = e.get(f"{key}_energy_j"), PART_COLORS[key]
        if v is not None and v > 0:
            parts.append((label, v, c))
            used += v
    if it - used > 1e-9 * max(1.0, it):
        parts.append(("other IT" if used else "IT", it - used, "#a6cee3"))
    if fac - it > 1e-9 * max(1.0, fac):
        parts.append(("facility overhead (PUE)", fac - it, "#b15928"))
    return parts


def render_pngs(report: Mapping[str, Any], dpi: int = 110) -> dict[str, bytes]:
    """PNG bytes of each plot, by name. Plots with nothing to show are left out."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out: dict[str, bytes] = {}

    def save(fig: Any, name: str) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        out[name] = buf.getvalue()

    e = report["energy"]
    label = report["subject"].get("cluster_name") or report["subject"].get("run_id") or ""

    # 1. facility energy split + provenance shares
    parts = _facility_parts(report)
    if parts:
        fac = e.get("facility_energy_j") or sum(p[1] for p in parts)
        scale, unit = _energy_unit(fac)
        fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 3.4))
        left = 0.0
        for name, v, c in parts:
            ax.barh([0], [v / scale], left=[left], color=c, label=f"{name}: {fmt_energy(v)}")
            left += v / scale
        oi = report["optimization_inversion"].get("overhead_share")
        title = f"Facility energy {fmt_energy(fac)}"
        if oi is not None:
            title += f"; overhead share (O-I index) {oi:.2f}" + (" - INVERTED" if oi > 0.5 else "")
        ax.set_title(title, fontsize=10)
        ax.set_yticks([])
        ax.set_xlabel(unit)
        ax.set_xlim(0, left * 1.001 if left > 0 else 1)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
        prov = report["provenance"]
        left = 0.0
        for cls in ("measured", "modeled", "replay", "mixed", "unknown"):
            s = prov.get(f"{cls}_share") or 0.0
            if s > 0:
                ax2.barh([0], [100 * s], left=[left], color=CLASS_COLORS[cls], label=f"{cls} {100 * s:.1f} %")
                left += 100 * s
        ax2.set_xlim(0, max(100.0, left))
        ax2.set_yticks([])
        ax2.set_xlabel("% of IT energy")
        ax2.set_title("Measured vs modeled", fontsize=10)
        ax2.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
        fig.tight_layout()
        save(fig, "facility")

    # 2. components
    comps = [r for r in e.get("by_component", []) if (r.get("energy_j") or 0) > 0]
    if comps:
        scale, unit = _energy_unit(max(r["energy_j"] for r in comps))
        fig, ax = plt.subplots(figsize=(7, 0.45 * len(comps) + 1.2))
        names = [r["component"] for r in comps]
        vals = [r["energy_j"] / scale for r in comps]
        bars = ax.barh(names, vals, color="#1f78b4")
        for b, r in zip(bars, comps):
            ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f" {fmt_share(r.get('share'))}", va="center", fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(unit)
        ax.set_xlim(0, max(vals) * 1.18)
        unsplit = all(r["component"] in ("other", "unspecified", "unattributed") for r in comps)
        ax.set_title(f"{PLOT_TITLES['components']} ({label})"
                     + ("\nthe sources do not split energy by CPU package, DRAM and GPU" if unsplit else ""), fontsize=10)
        fig.tight_layout()
        save(fig, "components")

    # 3. nodes: stacked dynamic/idle/boot/off when the records split it, else colored by source class
    nodes = e.get("by_node", [])
    if nodes:
        from matplotlib.patches import Patch

        from tao_core.governance.report import source_class

        shown = nodes[:30]
        scale, unit = _energy_unit(max(r["energy_j"] for r in shown) or 1.0)
        fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(shown) + 1.3))
        names = [f"{r['node_id']}" + (f" ({r['node_type']})" if r.get("node_type") else "") for r in shown]
        classes = sorted({source_class(r.get("source")) for r in shown})
        split = all(any(f"{k}_j" in r for k in PART_COLORS) for r in shown)
        if split:
            left = [0.0] * len(shown)
            for key, color in PART_COLORS.items():
                vals = [(r.get(f"{key}_j") or 0.0) / scale for r in shown]
                if any(vals):
                    ax.barh(names, vals, left=left, color=color, label=PART_LABELS[key])
                    left = [a + b for a, b in zip(left, vals)]
            rest = [max(0.0, r["energy_j"] / scale - lv) for r, lv in zip(shown, left)]
            if any(v > 1e-9 * max(left or [1.0]) for v in rest):
                ax.barh(names, rest, left=left, color="#a6cee3", label="other")
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                      title=", ".join(classes), title_fontsize=8)
        else:
            ax.barh(names, [r["energy_j"] / scale for r in shown],
                    color=[CLASS_COLORS[source_class(r.get("source"))] for r in shown])
            ax.legend(handles=[Patch(color=CLASS_COLORS[c], label=c) for c in classes], fontsize=8,
                      loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.05 * max(r["energy_j"] for r in shown) / scale)
        ax.set_xlabel(unit)
        ax.tick_params(axis="y", labelsize=8)
        more = f", top 30 of {len(nodes)}" if len(nodes) > 30 else ""
        ax.set_title(f"{PLOT_TITLES['nodes']}{more}", fontsize=10)
        fig.tight_layout()
        save(fig, "nodes")

    # 4. groups
    groups = e.get("by_group", [])
    if groups:
        shown = groups[:20]
        scale, unit = _energy_unit(max(r["energy_j"] for r in shown) or 1.0)
        fig, ax = plt.subplots(figsize=(7, 0.32 * len(shown) + 1.3))
        ax.barh([r["group"] for r in shown], [r["energy_j"] / scale for r in shown], color="#33a02c")
        ax.invert_yaxis()
        ax.set_xlabel(unit)
        ax.tick_params(axis="y", labelsize=8)
        more = f", top 20 of {len(groups)}" if len(groups) > 20 else ""
        ax.set_title(f"{PLOT_TITLES['groups']}{more}", fontsize=10)
        fig.tight_layout()
        save(fig, "groups")
    return out


# ----------------------------------------------------------------------------- document model
def _sections(report: Mapping[str, Any]) -> list[tuple[str, list]]:
    """The report as (heading, blocks); a block is ("p", text), ("table", header, rows) or
    ("plot", name)."""
    s, e, p = report["subject"], report["energy"], report["provenance"]
    oi, ctl, hw = report["optimization_inversion"], report["controller"], report["hardware"]
    led, em, reg = report.get("ledger"), report.get("emissions"), report["regulatory"]
    secs: list[tuple[str, list]] = []

    kv = [
        ("report type", report["report_type"]),
        ("run", s.get("run_id")), ("job", s.get("job") or "(whole run)"),
        ("cluster", s.get("cluster_name")), ("engine", s.get("engine")), ("policy", s.get("policy")),
        ("ledger time span", f"{s.get('start_time')} .. {s.get('end_time')}"),
        ("makespan", fmt_num(s.get("makespan_s"), "s", 1)), ("tasks completed", fmt_num(s.get("tasks_completed"))),
        ("generated", f"{report['generated_at']} by {report['generator']['name']} {report['generator']['version']}"),
    ]
    secs.append(("Run", [("table", ["item", "value"], [[k, "n/a" if v is None else str(v)] for k, v in kv])]))

    summary_rows = [
        ["IT energy", fmt_energy(e["it_energy_j"]), e.get("it_energy_basis", "")],
        ["facility energy", fmt_energy(e["facility_energy_j"]), e.get("facility_energy_method", "")],
        ["PUE", fmt_num(e["pue"]), e.get("pue_source", "")],
        ["facility overhead", fmt_energy(e.get("facility_overhead_j")), "facility - IT"],
        ["task work (dynamic)", fmt_energy(e.get("dynamic_energy_j")), ""],
        ["idle", fmt_energy(e.get("idle_energy_j")), ""],
        ["boot", fmt_energy(e.get("boot_energy_j")), ""],
        ["off", fmt_energy(e.get("off_energy_j")), "nodes powered off"],
    ]
    if em:
        ci = em.get("carbon_intensity_g_per_kwh")
        basis = (f"{ci:g} gCO2e/kWh x {em['facility_energy_kwh']:,.4f} kWh" if ci is not None
                 else f"each member's own carbon intensity; {em['facility_energy_kwh']:,.4f} kWh in all")
        summary_rows.append(["emissions", f"{em['emissions_kg_co2e']:,.3f} kg CO2e", basis])
    else:
        summary_rows.append(["emissions", "n/a", "no carbon intensity given (--carbon-intensity gCO2e/kWh)"])
    oi_val = oi.get("overhead_share")
    summary_rows.append([
        "Optimization-Inversion index", fmt_num(oi_val),
        ("INVERTED (above 0.5)" if oi.get("inverted") else "not inverted") + f"; {oi.get('source')}" if oi_val is not None else oi.get("source", ""),
    ])
    secs.append(("Energy", [("table", ["figure", "value", "basis"], summary_rows), ("plot", "facility"),
                            ("p", f"Optimization-Inversion index: {oi.get('definition')}.")]))

    comp_rows = [[r["component"], fmt_energy(r["energy_j"]), fmt_share(r.get("share"))] for r in e["by_component"]]
    secs.append(("Energy by component", [
        ("p", f"Basis: {e.get('breakdown_basis', '')}. 'unspecified': energy of records that do not split it by "
              "component; 'unattributed': IT energy in no breakdown record."),
        ("table", ["component", "energy", "share of IT"], comp_rows), ("plot", "components")]))
    split = any("idle_j" in r or "dynamic_j" in r for r in e["by_node"])
    node_head = ["node", "type", "energy", "share of IT"] + (["task work", "idle", "boot", "off"] if split else []) + ["source"]
    node_rows = [[r["node_id"], r.get("node_type") or "", fmt_energy(r["energy_j"]), fmt_share(r.get("share"))]
                 + ([fmt_energy(r.get(f"{k}_j")) for k in ("dynamic", "idle", "boot", "off")] if split else [])
                 + [r.get("source") or ""] for r in e["by_node"]]
    secs.append(("Energy by node", [("table", node_head, node_rows), ("plot", "nodes")]))
    group_rows = [[r["group"], fmt_num(r.get("tasks")), fmt_energy(r["energy_j"]), fmt_share(r.get("share"))] for r in e["by_group"]]
    blocks = [("table", ["task group", "tasks", "energy", "share of IT"], group_rows), ("plot", "groups")]
    if e.get("by_job"):
        blocks.append(("table", ["job", "tasks", "energy", "share of IT", "budget", "within budget"],
                       [[r["job"], fmt_num(r.get("tasks")), fmt_energy(r["energy_j"]), fmt_share(r.get("share")),
                         fmt_energy(r.get("budget_j")) if r.get("budget_j") is not None else "none",
                         fmt_num(r.get("within_budget"))] for r in e["by_job"]]))
    if e.get("attribution_methods"):
        blocks.append(("p", "Attribution to tasks: " + "; ".join(e["attribution_methods"]) + "."))
    secs.append(("Energy by task group and job", blocks))

    u = p["uncertainty"]
    prov_rows = [[r["source"], r["class"], fmt_energy(r["energy_j"]), fmt_share(r.get("share")),
                  fmt_share(r.get("uncertainty_rel")), "; ".join(r.get("methods") or [])] for r in p["by_source"]]
    secs.append(("Measured and modeled energy", [
        ("p", f"Measured {fmt_share(p['measured_share'])}, modeled {fmt_share(p['modeled_share'])}, "
              f"replayed {fmt_share(p['replay_share'])}, mixed {fmt_share(p['mixed_share'])}, "
              f"unknown {fmt_share(p['unknown_share'])} of IT energy. " + (
                  f"Combined standard uncertainty {fmt_energy(u['standard_j'])} ({fmt_share(u.get('relative'))}), "
                  f"upper bound {fmt_energy(u['upper_bound_j'])}"
                  if u.get("complete", True) else
                  f"Uncertainty: {u.get('note', 'incomplete')}" + (
                      f"; stated part: standard {fmt_energy(u['standard_j'])}, upper bound {fmt_energy(u['upper_bound_j'])}"
                      if u["upper_bound_j"] > 0 else "")
              ) + f". Method: {u['method']}."),
        ("table", ["source", "class", "energy", "share", "rel. uncertainty", "method"], prov_rows)]))

    hw_rows = [[t.get("node_type") or "", str(t.get("count")), fmt_num(t.get("cpus"), digits=0), fmt_num(t.get("gpus"), digits=0)]
               for t in hw.get("node_types", [])]
    tel_rows = [[str(t.get("domain") or ""), str(t.get("source") or ""), str(t.get("method") or "")] for t in hw.get("telemetry", [])]
    secs.append(("Hardware and telemetry", [
        ("table", ["node type", "nodes", "CPUs each", "GPUs each"], hw_rows),
        ("table", ["domain", "source", "method"], tel_rows)]))

    cfg = ctl.get("config") or {}
    ctl_rows = [["policy", str(ctl.get("policy"))],
                ["power budget", fmt_num(ctl.get("power_budget_w"), "W", 1)],
                ["peak power", fmt_num(ctl.get("peak_power_w"), "W", 1)],
                ["time above budget", fmt_num(ctl.get("budget_violation_s"), "s", 3)],
                ["budget adherent", fmt_num(ctl.get("budget_adherent")) + f" ({ctl.get('budget_adherence', '')})"],
                ["decisions", ", ".join(f"{k}: {v}" for k, v in (ctl.get("decisions") or {}).items()) or "none recorded"]]
    blocks = [("table", ["item", "value"], ctl_rows)]
    if cfg:
        blocks.append(("table", ["setting", "value"], [[k, json.dumps(v, sort_keys=True)] for k, v in sorted(cfg.items())]))
    secs.append(("Controller and budget", blocks))

    if report.get("federation"):
        fed = report["federation"]
        rows = [[m["cluster"], str(m.get("run_id")), fmt_energy(m["it_energy_j"]), fmt_energy(m["facility_energy_j"]),
                 fmt_num(m.get("pue")), fmt_num(m.get("overhead_share")), fmt_share(m.get("measured_share")),
                 (m.get("ledger") or {}).get("head_hash") or "", m["report_sha256"]] for m in fed["members"]]
        secs.append(("Federation members", [("p", fed.get("method", "")),
                                           ("table", ["cluster", "run", "IT", "facility", "PUE", "O-I index", "measured",
                                                      "ledger head", "report SHA-256"], rows)]))
    if led:
        led_rows = [["file", str(led.get("file"))], ["status", str(led.get("status"))],
                    ["head hash (seq)", f"{led.get('head_hash')} ({led.get('head_seq')})"],
                    ["records / checkpoints", f"{led.get('records')} / {led.get('checkpoints')}"],
                    ["closed", fmt_num(led.get("closed"))],
                    ["signer key id", ", ".join(led.get("key_ids") or []) or "none"],
                    ["signer authenticated", fmt_num(led.get("signer_authenticated"))
                     + ("" if led.get("signer_authenticated") else " (check with tao audit verify --pubkey)")]]
        secs.append(("Ledger", [("p", "This report summarises the ledger up to the head hash below. Check it with "
                                      "`tao audit verify LEDGER --pubkey LEDGER.pub` and `tao report validate REPORT.json "
                                      "--ledger LEDGER`."),
                                ("table", ["item", "value"], led_rows)]))

    map_rows = [[m["field"], m["provision"], m["purpose"]] for m in reg["mapping"]]
    est_rows = [[m["field"], "estimate" if m["estimated"] else "measured", m["method"]] for m in reg["estimates"]]
    secs.append(("EU AI Act mapping", [("p", f"{reg['regulation']}. {reg['notes']}"),
                                       ("table", ["report field", "provision", "purpose"], map_rows),
                                       ("table", ["figure", "status", "method"], est_rows)]))
    integ = report["integrity"]
    blocks = [("p", f"SHA-256 of the report's canonical JSON ({integ['canonicalization']}), "
                    f"{integ.get('covers', '')}: {integ['content_sha256']}")]
    sig = integ.get("signature")
    blocks.append(("p", f"Signed (Ed25519) by key {sig['key_id']}, public key {sig['public_key']}; check with "
                        "`tao report validate REPORT.json --pubkey KEY.pub`." if sig else
                        "Not signed: its figures are authenticated through the ledger "
                        "(`tao report validate REPORT.json --ledger LEDGER --pubkey LEDGER.pub`)."))
    secs.append(("Integrity", blocks))
    return secs


# ----------------------------------------------------------------------------- Markdown
def _md_cell(x: str) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Mapping[str, Any], png_names: Optional[Mapping[str, str]] = None) -> str:
    """Markdown text; ``png_names`` maps plot names to the PNG file names beside it."""
    png_names = png_names or {}
    title = report["subject"].get("cluster_name") or report["subject"].get("run_id") or "run"
    lines = [f"# Energy report: {title}", ""]
    for heading, blocks in _sections(report):
        lines += [f"## {heading}", ""]
        for b in blocks:
            if b[0] == "p":
                lines += [b[1], ""]
            elif b[0] == "table":
                if not b[2]:
                    continue
                lines.append("| " + " | ".join(_md_cell(h) for h in b[1]) + " |")
                lines.append("|" + "|".join("---" for _ in b[1]) + "|")
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b[2]]
                lines.append("")
            elif b[0] == "plot" and b[1] in png_names:
                lines += [f"![{PLOT_TITLES[b[1]]}]({png_names[b[1]]})", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td{word-break:break-word}img{max-width:100%;margin:.5em 0}.inv{color:#b00;font-weight:bold}
code{background:#f4f4f4;padding:0 .2em}
"""


def render_html(report: Mapping[str, Any], pngs: Optional[Mapping[str, bytes]] = None) -> str:
    """One self-contained HTML page; plots embedded as base64 PNG."""
    if pngs is None:
        pngs = render_pngs(report)
    esc: Callable[[Any], str] = lambda x: html.escape(str(x))
    title = report["subject"].get("cluster_name") or report["subject"].get("run_id") or "run"
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>Energy report: {esc(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>Energy report: {esc(title)}</h1>"]
    if report["optimization_inversion"].get("inverted"):
        out.append('<p class="inv">Optimization-Inversion: more than half of the facility energy went to overhead, '
                   "not to task work.</p>")
    for heading, blocks in _sections(report):
        out.append(f"<h2>{esc(heading)}</h2>")
        for b in blocks:
            if b[0] == "p":
                out.append("<p>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(b[1])) + "</p>")
            elif b[0] == "table":
                if not b[2]:
                    continue
                out.append("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in b[1]) + "</tr></thead><tbody>")
                out += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in b[2]]
                out.append("</tbody></table>")
            elif b[0] == "plot" and b[1] in pngs:
                data = base64.b64encode(pngs[b[1]]).decode("ascii")
                out.append(f'<img alt="{esc(PLOT_TITLES[b[1]])}" src="data:image/png;base64,{data}">')
    out.append("</body></html>")
    return "\n".join(out)
