"""Markdown and HTML renderings of an energy report, with matplotlib plots.

``render_pngs(report)`` draws the plots (PNG bytes per name: ``facility``, ``components``,
``nodes``, ``groups``); ``render_markdown(report, png_names)`` references the PNG files
written beside the Markdown; ``render_html(report)`` embeds them as base64 data URIs, so the
HTML is one self-contained file; ``render_mdf(report)`` writes the Model Documentation Form
items alone, as Markdown text to paste into the form. Energy is shown in kWh when large,
else in kJ or J.
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
PART_COLORS = {"task": "#1f78b4", "idle": "#fdbf6f", "boot": "#ff7f00", "off": "#cab2d6"}
PART_LABELS = {"task": "task work", "idle": "idle", "boot": "boot", "off": "off"}
NODE_PART_KEYS = {"task": "tasks_j", "idle": "idle_j", "boot": "boot_j", "off": "off_j"}
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
    """(label, joules, color) pieces of facility energy: task work, idle, boot, off, other
    IT, facility overhead. Pieces the report lacks are left out."""
    e = report["energy"]
    it = e.get("it_energy_j") or 0.0
    fac = e.get("facility_energy_j") or 0.0
    parts = []
    used = 0.0
    for key in PART_COLORS:
        v = e.get(f"{key}_energy_j")
        if v is not None and v > 0:
            parts.append((PART_LABELS[key], v, PART_COLORS[key]))
            used += v
    if it - used > 1e-9 * max(1.0, it):
        parts.append(("other IT" if used else "IT", it - used, "#a6cee3"))
    if fac - it > 1e-9 * max(1.0, fac):
        parts.append(("facility overhead (PUE)", fac - it, "#b15928"))
    return parts


def inversion_label(oi: Mapping[str, Any]) -> str:
    """'inverted' or 'not inverted' with the rule, or why there is no index."""
    if oi.get("overhead_share") is None:
        return str(oi.get("source", ""))
    verdict = "inverted" if oi.get("inverted") else "not inverted"
    return f"{verdict} (inverted: overhead share above {oi.get('threshold')})"


def _plot_facility(plt: Any, report: Mapping[str, Any]) -> Optional[Any]:
    parts = _facility_parts(report)
    if not parts:
        return None
    fac = report["energy"].get("facility_energy_j") or sum(p[1] for p in parts)
    scale, unit = _energy_unit(fac)
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 3.4))
    left = 0.0
    for name, v, c in parts:
        ax.barh([0], [v / scale], left=[left], color=c, label=f"{name}: {fmt_energy(v)}")
        left += v / scale
    oi = report["optimization_inversion"]
    title = f"Facility energy {fmt_energy(fac)}"
    if oi.get("overhead_share") is not None:
        title += f"; overhead share {oi['overhead_share']:.2f}, {'inverted' if oi.get('inverted') else 'not inverted'}"
    ax.set_title(title, fontsize=10)
    ax.set_yticks([])
    ax.set_xlabel(unit)
    ax.set_xlim(0, left * 1.001 if left > 0 else 1)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    _plot_classes(ax2, report["provenance"])
    fig.tight_layout()
    return fig


def _plot_classes(ax: Any, prov: Mapping[str, Any]) -> None:
    left = 0.0
    for cls in CLASS_COLORS:
        s = prov.get(f"{cls}_share") or 0.0
        if s > 0:
            ax.barh([0], [100 * s], left=[left], color=CLASS_COLORS[cls], label=f"{cls} {100 * s:.1f} %")
            left += 100 * s
    ax.set_xlim(0, max(100.0, left))
    ax.set_yticks([])
    ax.set_xlabel("% of IT energy")
    ax.set_title("Measured vs modeled", fontsize=10)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)


def _plot_components(plt: Any, report: Mapping[str, Any]) -> Optional[Any]:
    comps = [r for r in report["energy"].get("by_component", []) if (r.get("energy_j") or 0) > 0]
    if not comps:
        return None
    label = report["subject"].get("cluster_name") or report["subject"].get("run_id") or ""
    scale, unit = _energy_unit(max(r["energy_j"] for r in comps))
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(comps) + 1.2))
    vals = [r["energy_j"] / scale for r in comps]
    bars = ax.barh([r["component"] for r in comps], vals, color="#1f78b4")
    for b, r in zip(bars, comps):
        ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f" {fmt_share(r.get('share'))}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_xlim(0, max(vals) * 1.18)
    unsplit = all(r["component"] == "other" for r in comps)
    ax.set_title(f"{PLOT_TITLES['components']} ({label})"
                 + ("\nthe sources do not split energy by CPU package, DRAM and GPU" if unsplit else ""), fontsize=10)
    fig.tight_layout()
    return fig


def _plot_nodes(plt: Any, report: Mapping[str, Any]) -> Optional[Any]:
    """Stacked task work / idle / boot / off per node when the report splits it, else bars
    colored by source class."""
    from matplotlib.patches import Patch

    from tao_core.governance.provenance import source_class

    nodes = report["energy"].get("by_node", [])
    if not nodes:
        return None
    shown = nodes[:30]
    scale, unit = _energy_unit(max(r["energy_j"] for r in shown) or 1.0)
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(shown) + 1.3))
    names = [f"{r['node_id']}" + (f" ({r['node_type']})" if r.get("node_type") else "") for r in shown]
    classes = sorted({source_class(r.get("source")) for r in shown})
    if all(r.get("idle_j") is not None for r in shown):
        left = [0.0] * len(shown)
        for key, color in PART_COLORS.items():
            vals = [(r.get(NODE_PART_KEYS[key]) or 0.0) / scale for r in shown]
            if any(vals):
                ax.barh(names, vals, left=left, color=color, label=PART_LABELS[key])
                left = [a + b for a, b in zip(left, vals)]
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
    return fig


def _plot_groups(plt: Any, report: Mapping[str, Any]) -> Optional[Any]:
    groups = report["energy"].get("by_group", [])
    if not groups:
        return None
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
    return fig


PLOTTERS: dict[str, Callable[[Any, Mapping[str, Any]], Optional[Any]]] = {
    "facility": _plot_facility, "components": _plot_components, "nodes": _plot_nodes, "groups": _plot_groups,
}


def render_pngs(report: Mapping[str, Any], dpi: int = 110) -> dict[str, bytes]:
    """PNG bytes of each plot, by name. Plots with nothing to show are left out."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out: dict[str, bytes] = {}
    for name, plot in PLOTTERS.items():
        fig = plot(plt, report)
        if fig is None:
            continue
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        out[name] = buf.getvalue()
    return out


# ----------------------------------------------------------------------------- document model
Block = tuple


def _run_section(report: Mapping[str, Any]) -> list[Block]:
    s = report["subject"]
    kv = [
        ("report type", report["report_type"]),
        ("run", s.get("run_id")), ("job", s.get("job") or "(whole run)"),
        ("cluster", s.get("cluster_name")), ("engine", s.get("engine")), ("policy", s.get("policy")),
        ("ledger time span", f"{s.get('start_time')} .. {s.get('end_time')}"),
        ("makespan", fmt_num(s.get("makespan_s"), "s", 1)), ("tasks completed", fmt_num(s.get("tasks_completed"))),
        ("generated", f"{report['generated_at']} by {report['generator']['name']} {report['generator']['version']}"),
    ]
    return [("table", ["item", "value"], [[k, "n/a" if v is None else str(v)] for k, v in kv])]


def _emissions_row(em: Optional[Mapping[str, Any]]) -> list[str]:
    if not em:
        return ["emissions", "n/a", "no carbon intensity given (--carbon-intensity gCO2e/kWh)"]
    ci = em.get("carbon_intensity_g_per_kwh")
    basis = (f"{ci:g} gCO2e/kWh x {em['facility_energy_kwh']:,.4f} kWh ({em['basis']})" if ci is not None
             else f"each member's own carbon intensity; {em['facility_energy_kwh']:,.4f} kWh in all")
    return ["emissions", f"{em['emissions_kg_co2e']:,.3f} kg CO2e", basis]


def _energy_section(report: Mapping[str, Any]) -> list[Block]:
    e, oi = report["energy"], report["optimization_inversion"]
    defs = e.get("definitions") or {}
    rows = [
        ["IT energy", fmt_energy(e["it_energy_j"]), e.get("it_energy_basis", "")],
        ["facility energy", fmt_energy(e["facility_energy_j"]), e.get("facility_energy_method", "")],
        ["PUE", fmt_num(e["pue"]), e.get("pue_source", "")],
        ["facility overhead", fmt_energy(e.get("facility_overhead_j")), "facility - IT"],
        ["task work", fmt_energy(e.get("task_energy_j")), defs.get("task_energy_j", "")],
        ["idle", fmt_energy(e.get("idle_energy_j")), defs.get("idle_energy_j", "")],
        ["boot", fmt_energy(e.get("boot_energy_j")), defs.get("boot_energy_j", "")],
        ["off", fmt_energy(e.get("off_energy_j")), defs.get("off_energy_j", "")],
        _emissions_row(report.get("emissions")),
        ["overhead share (Optimization-Inversion index)", fmt_num(oi.get("overhead_share")), inversion_label(oi)],
    ]
    return [("table", ["figure", "value", "basis"], rows), ("plot", "facility"),
            ("p", f"Overhead share: {oi.get('definition')}. The by-node task work and the by-group energy add up to "
                  "the task work above.")]


def _component_section(report: Mapping[str, Any]) -> list[Block]:
    e = report["energy"]
    rows = [[r["component"], fmt_energy(r["energy_j"]), fmt_share(r.get("share"))] for r in e["by_component"]]
    return [("p", f"Basis: {e.get('breakdown_basis', '')}."), ("table", ["component", "energy", "share of IT"], rows),
            ("plot", "components")]


def _node_section(report: Mapping[str, Any]) -> list[Block]:
    nodes = report["energy"]["by_node"]
    split = any(r.get("idle_j") is not None for r in nodes)
    head = ["node", "type", "energy", "share of IT"] + (["task work", "idle", "boot", "off"] if split else
                                                        ["task work"]) + ["source"]
    keys = ("tasks", "idle", "boot", "off") if split else ("tasks",)
    rows = [[r["node_id"], r.get("node_type") or "", fmt_energy(r["energy_j"]), fmt_share(r.get("share"))]
            + [fmt_energy(r.get(f"{k}_j")) for k in keys] + [r.get("source") or ""] for r in nodes]
    return [("table", head, rows), ("plot", "nodes")]


def _group_section(report: Mapping[str, Any]) -> list[Block]:
    e = report["energy"]
    rows = [[r["group"], fmt_num(r.get("tasks")), fmt_energy(r["energy_j"]), fmt_share(r.get("share"))]
            for r in e["by_group"]]
    blocks: list[Block] = [("table", ["task group", "tasks", "energy", "share of IT"], rows), ("plot", "groups")]
    if e.get("by_job"):
        blocks.append(("table", ["job", "tasks", "energy", "share of IT", "budget", "within budget"],
                       [[r["job"], fmt_num(r.get("tasks")), fmt_energy(r["energy_j"]), fmt_share(r.get("share")),
                         fmt_energy(r.get("budget_j")) if r.get("budget_j") is not None else "none",
                         fmt_num(r.get("within_budget"))] for r in e["by_job"]]))
    if e.get("attribution_methods"):
        blocks.append(("p", "Attribution to tasks: " + "; ".join(e["attribution_methods"]) + "."))
    return blocks


def _uncertainty_text(u: Mapping[str, Any]) -> str:
    if u.get("complete", True):
        return (f"Combined standard uncertainty {fmt_energy(u['standard_j'])} ({fmt_share(u.get('relative'))}), "
                f"upper bound {fmt_energy(u['upper_bound_j'])}")
    stated = (f"; stated part: standard {fmt_energy(u['standard_j'])}, upper bound {fmt_energy(u['upper_bound_j'])}"
              if u["upper_bound_j"] > 0 else "")
    return f"Uncertainty: {u.get('note', 'incomplete')}{stated}"


def _provenance_section(report: Mapping[str, Any]) -> list[Block]:
    p = report["provenance"]
    u = p["uncertainty"]
    rows = [[r["source"], r["class"], fmt_energy(r["energy_j"]), fmt_share(r.get("share")),
             fmt_share(r.get("uncertainty_rel")), "; ".join(r.get("methods") or [])] for r in p["by_source"]]
    text = (f"Measured {fmt_share(p['measured_share'])}, modeled {fmt_share(p['modeled_share'])}, "
            f"replayed {fmt_share(p['replay_share'])}, mixed {fmt_share(p['mixed_share'])}, "
            f"unknown {fmt_share(p['unknown_share'])} of IT energy. {_uncertainty_text(u)}. Method: {u['method']}.")
    return [("p", text), ("table", ["source", "class", "energy", "share", "rel. uncertainty", "method"], rows)]


def _hardware_section(report: Mapping[str, Any]) -> list[Block]:
    hw = report["hardware"]
    types = [[t.get("node_type") or "", str(t.get("count")), fmt_num(t.get("cpus"), digits=0),
              fmt_num(t.get("gpus"), digits=0)] for t in hw.get("node_types", [])]
    tel = [[str(t.get("domain") or ""), str(t.get("source") or ""), str(t.get("method") or "")]
           for t in hw.get("telemetry", [])]
    return [("table", ["node type", "nodes", "CPUs each", "GPUs each"], types),
            ("table", ["domain", "source", "method"], tel)]


def _controller_section(report: Mapping[str, Any]) -> list[Block]:
    ctl = report["controller"]
    rows = [["policy", str(ctl.get("policy"))],
            ["power budget", fmt_num(ctl.get("power_budget_w"), "W", 1)],
            ["peak power", fmt_num(ctl.get("peak_power_w"), "W", 1)],
            ["time above budget", fmt_num(ctl.get("budget_violation_s"), "s", 3)],
            ["budget adherent", fmt_num(ctl.get("budget_adherent")) + f" ({ctl.get('budget_adherence', '')})"],
            ["decisions", ", ".join(f"{k}: {v}" for k, v in (ctl.get("decisions") or {}).items()) or "none recorded"]]
    blocks: list[Block] = [("table", ["item", "value"], rows)]
    cfg = ctl.get("config") or {}
    if cfg:
        blocks.append(("table", ["setting", "value"], [[k, json.dumps(v, sort_keys=True)] for k, v in sorted(cfg.items())]))
    return blocks


def _federation_section(report: Mapping[str, Any]) -> list[Block]:
    fed = report["federation"]
    inputs = [[i["label"], i["report_type"], i["verified_by"]["method"], str(i["verified_by"].get("key_id") or ""),
               i["report_sha256"]] for i in fed["inputs"]]
    rows = [[m["cluster"], str(m.get("run_id")), fmt_energy(m["it_energy_j"]), fmt_energy(m["facility_energy_j"]),
             fmt_num(m.get("pue")), fmt_num(m.get("overhead_share")), fmt_share(m.get("measured_share")),
             (m.get("ledger") or {}).get("head_hash") or "", m["report_sha256"]] for m in fed["members"]]
    return [("p", fed.get("method", "")),
            ("table", ["input", "type", "verified by", "key id", "report SHA-256"], inputs),
            ("table", ["cluster", "run", "IT", "facility", "PUE", "overhead share", "measured", "ledger head",
                       "report SHA-256"], rows)]


def _ledger_section(report: Mapping[str, Any]) -> list[Block]:
    led = report["ledger"]
    used = led.get("unsigned_records_used") or 0
    rows = [["file", str(led.get("file"))], ["status", str(led.get("status"))],
            ["head hash (seq)", f"{led.get('head_hash')} ({led.get('head_seq')})"],
            ["signed through seq", f"{led.get('signed_through_seq')} ({led.get('checkpoints')} checkpoint(s))"],
            ["unsigned records used", f"{used}" + (" (NOT covered by any signature)" if used else "")],
            ["closed", fmt_num(led.get("closed"))],
            ["signer key id", ", ".join(led.get("key_ids") or []) or "none"],
            ["signer authenticated", fmt_num(led.get("signer_authenticated"))
             + ("" if led.get("signer_authenticated") else " (check with tao audit verify --pubkey)")]]
    text = ("This report summarises the ledger up to the head hash below. Check it with "
            "`tao audit verify LEDGER --pubkey LEDGER.pub` and `tao report validate REPORT.json --ledger LEDGER "
            "--pubkey LEDGER.pub`; without them the fields below are the report's claims, not checked facts.")
    if used:
        text += f" WARNING: {used} record(s) of this run are not covered by any checkpoint signature."
    return [("p", text), ("table", ["item", "value"], rows)]


def _regulatory_section(report: Mapping[str, Any]) -> list[Block]:
    reg = report["regulatory"]
    return [("p", f"{reg['regulation']}. {reg['notes']}"),
            ("table", ["report field", "provision", "purpose"], [[m["field"], m["provision"], m["purpose"]]
                                                                 for m in reg["mapping"]]),
            ("table", ["figure", "status", "method"], [[m["field"], "estimate" if m["estimated"] else "measured",
                                                        m["method"]] for m in reg["estimates"]])]


MDF_ITEMS = ("training_time", "training_computation", "training_energy", "energy_methodology",
             "inference_computation", "boundary")


def _mdf_section(report: Mapping[str, Any]) -> list[Block]:
    md = report["model_documentation"]
    rows = [[md["labels"][k], md[k]["status"], md[k]["text"]] for k in MDF_ITEMS]
    return [("p", f"{md['form']}; {md['wording']}. {md['scope_note']}"),
            ("table", ["item", "status", "what to enter"], rows)]


def fmt_per_unit(j: Optional[float]) -> str:
    """Joules per unit with three significant figures (n/a when unknown)."""
    return "n/a" if j is None else f"{j:.3g} J"


def fmt_amount(n: float) -> str:
    """A count of units: whole numbers with thousands separators, else six significant figures."""
    return f"{n:,.0f}" if float(n).is_integer() and abs(n) < 1e15 else f"{n:,.6g}"


def _grams(g: Optional[float]) -> str:
    return "n/a" if g is None else f"{g:.3g} g"


def _units_section(report: Mapping[str, Any]) -> list[Block]:
    wu = report["work_units"]
    if not wu["counted"]:
        return [("p", f"{wu['note'][0].upper()}{wu['note'][1:]}: no figure per unit (count units in the tasks with "
                      "`tao.count(unit, n)`).")]
    blocks: list[Block] = [
        ("p", f"{wu['note'][0].upper()}{wu['note'][1:]}. Per report subject: {wu['definitions']['totals']}. Per "
              f"group: {wu['definitions']['by_group']}."),
        ("table", ["unit", "counted", "task work per unit", "facility energy per unit", "std. uncertainty",
                   "gCO2e per unit"],
         [[t["unit"], fmt_amount(t["amount"]), fmt_per_unit(t["task_energy_j_per_unit"]),
           fmt_per_unit(t["facility_energy_j_per_unit"]), fmt_per_unit(t["standard_uncertainty_j_per_unit"]),
           _grams(t["emissions_g_co2e_per_unit"])] for t in wu["totals"]])]
    for key in ("group", "job"):
        rows = wu[f"by_{key}"]
        if rows:
            blocks.append(("table", [key, "unit", "counted", "task work per unit", "facility energy per unit",
                                     "std. uncertainty", "gCO2e per unit"],
                           [[r[key], r["unit"], fmt_amount(r["amount"]), fmt_per_unit(r["energy_j_per_unit"]),
                             fmt_per_unit(r["facility_energy_j_per_unit"]),
                             fmt_per_unit(r["standard_uncertainty_j_per_unit"]), _grams(r["emissions_g_co2e_per_unit"])]
                            for r in rows]))
    return blocks


def _sci_section(report: Mapping[str, Any]) -> list[Block]:
    sci = report["sci"]
    kv = [["E", f"{sci['e_kwh']:.6g} kWh", sci["e_boundary"]],
          ["I", fmt_num(sci["i_g_co2e_per_kwh"], "gCO2e/kWh", 1), sci["i_source"]],
          ["O = E x I", _grams(sci["o_g_co2e"]), "operational emissions"],
          ["M", _grams(sci["m_g_co2e"]), sci["m_source"]]]
    blocks: list[Block] = [("p", f"{sci['specification']}: {sci['formula']}. Status: {sci['status']}."),
                           ("table", ["term", "value", "basis"], kv)]
    if sci["per_unit"]:
        blocks.append(("table", ["R (functional unit)", "amount", "O per R", "SCI = (O + M) per R"],
                       [[r["unit"], fmt_amount(r["r"]), _grams(r["operational_g_co2e_per_unit"]),
                         _grams(r["sci_g_co2e_per_unit"])] for r in sci["per_unit"]]))
    return blocks


def _integrity_section(report: Mapping[str, Any]) -> list[Block]:
    integ = report["integrity"]
    sig = integ.get("signature")
    return [("p", f"SHA-256 of the report's canonical JSON ({integ['canonicalization']}), "
                  f"{integ.get('covers', '')}: {integ['content_sha256']}"),
            ("p", f"Signed (Ed25519) by key {sig['key_id']}, public key {sig['public_key']}; check with "
                  "`tao report validate REPORT.json --pubkey KEY.pub`." if sig else
                  "Not signed: its figures are authenticated through the ledger "
                  "(`tao report validate REPORT.json --ledger LEDGER --pubkey LEDGER.pub`).")]


def _sections(report: Mapping[str, Any]) -> list[tuple[str, list[Block]]]:
    """The report as (heading, blocks); a block is ("p", text), ("table", header, rows) or
    ("plot", name)."""
    secs = [("Run", _run_section(report)), ("Energy", _energy_section(report)),
            ("Energy by component", _component_section(report)), ("Energy by node", _node_section(report)),
            ("Energy by task group and job", _group_section(report)),
            ("Measured and modeled energy", _provenance_section(report)),
            ("Hardware and telemetry", _hardware_section(report)),
            ("Controller and budget", _controller_section(report))]
    if report.get("federation"):
        secs.append(("Federation members", _federation_section(report)))
    if report.get("ledger"):
        secs.append(("Ledger", _ledger_section(report)))
    secs += [("Energy per unit of work", _units_section(report)),
             ("Software Carbon Intensity (SCI)", _sci_section(report)),
             ("Model Documentation Form (GPAI Code of Practice)", _mdf_section(report)),
             ("EU AI Act mapping", _regulatory_section(report)), ("Integrity", _integrity_section(report))]
    return secs


def warnings(report: Mapping[str, Any]) -> list[str]:
    """What a reader must see first: unsigned or unverified records, an inverted run."""
    out = []
    led = report.get("ledger") or {}
    if led.get("status") == "unverified":
        out.append("UNVERIFIED: this report was built from records of no verified ledger.")
    elif led.get("unsigned_records_used"):
        out.append(f"UNSIGNED: {led['unsigned_records_used']} record(s) of this run are not covered by any checkpoint "
                   "signature (the report was built with unsigned records included).")
    if report["optimization_inversion"].get("inverted"):
        out.append("Inverted: more than half of the facility energy went to overhead (idle, boot, off, facility), "
                   "not to task work.")
    return out


# ----------------------------------------------------------------------------- Markdown
def _md_cell(x: str) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _md_block(b: Block, png_names: Mapping[str, str]) -> list[str]:
    if b[0] == "p":
        return [b[1], ""]
    if b[0] == "table":
        if not b[2]:
            return []
        return (["| " + " | ".join(_md_cell(h) for h in b[1]) + " |", "|" + "|".join("---" for _ in b[1]) + "|"]
                + ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b[2]] + [""])
    if b[0] == "plot" and b[1] in png_names:
        return [f"![{PLOT_TITLES[b[1]]}]({png_names[b[1]]})", ""]
    return []


def render_markdown(report: Mapping[str, Any], png_names: Optional[Mapping[str, str]] = None) -> str:
    """Markdown text; ``png_names`` maps plot names to the PNG file names beside it."""
    png_names = png_names or {}
    title = report["subject"].get("cluster_name") or report["subject"].get("run_id") or "run"
    lines = [f"# Energy report: {title}", ""]
    for w in warnings(report):
        lines += [f"**{w}**", ""]
    for heading, blocks in _sections(report):
        lines += [f"## {heading}", ""]
        for b in blocks:
            lines += _md_block(b, png_names)
    return "\n".join(lines)


def render_mdf(report: Mapping[str, Any]) -> str:
    """The Model Documentation Form items as Markdown: one heading per item, then the text
    to enter, then where the figures come from."""
    md = report["model_documentation"]
    title = report["subject"].get("cluster_name") or report["subject"].get("run_id") or "run"
    lines = [f"# Model Documentation Form: energy and compute items ({title})", "",
             f"{md['form']}; {md['wording']}.", "", md["scope_note"], ""]
    for w in warnings(report):
        lines += [f"**{w}**", ""]
    for k in MDF_ITEMS:
        lines += [f"## {md['labels'][k]}", "", md[k]["text"], ""]
        if md[k]["status"] != "filled":
            lines += [f"_({md[k]['status']})_", ""]
    led = report.get("ledger") or {}
    lines += ["---", "", f"From TAO energy report {report['integrity']['content_sha256']} ({report['report_format']}, "
              f"generated {report['generated_at']})" + (f", ledger head {led['head_hash']} at seq {led['head_seq']}"
                                                        if led.get("head_hash") else "") + ".", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td{word-break:break-word}img{max-width:100%;margin:.5em 0}.warn{color:#b00;font-weight:bold}
code{background:#f4f4f4;padding:0 .2em}
"""


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _html_block(b: Block, pngs: Mapping[str, bytes]) -> list[str]:
    if b[0] == "p":
        return ["<p>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", _esc(b[1])) + "</p>"]
    if b[0] == "table":
        if not b[2]:
            return []
        return (["<table><thead><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in b[1]) + "</tr></thead><tbody>"]
                + ["<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in b[2]]
                + ["</tbody></table>"])
    if b[0] == "plot" and b[1] in pngs:
        data = base64.b64encode(pngs[b[1]]).decode("ascii")
        return [f'<img alt="{_esc(PLOT_TITLES[b[1]])}" src="data:image/png;base64,{data}">']
    return []


def render_html(report: Mapping[str, Any], pngs: Optional[Mapping[str, bytes]] = None) -> str:
    """One self-contained HTML page; plots embedded as base64 PNG."""
    if pngs is None:
        pngs = render_pngs(report)
    title = report["subject"].get("cluster_name") or report["subject"].get("run_id") or "run"
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>Energy report: {_esc(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>Energy report: {_esc(title)}</h1>"]
    out += [f'<p class="warn">{_esc(w)}</p>' for w in warnings(report)]
    for heading, blocks in _sections(report):
        out.append(f"<h2>{_esc(heading)}</h2>")
        for b in blocks:
            out += _html_block(b, pngs)
    out.append("</body></html>")
    return "\n".join(out)
