"""``zoo report``: one table per family from the stored results, plus a Pareto plot (metric vs latency) as PNG.

Both land in ``store.reports(model)`` (``table.json`` and ``pareto.png``) for the card stage to embed. Speed-ups
are computed only between variants measured on the same machine, and a variant measured off its target is shown
as such — its latency is this machine's, not the target's. Every task is reported the same way: the primary
metric is the gate's (else the first declared), and for a lower-is-better one (perplexity) "ratio to fp32" is
fp32 / variant and the Pareto front prefers lower values, so 1.0 means equal and below 1.0 worse in every table.

Every per-row metric is shown with its 95% interval and the ratio to fp32 with the paired bootstrap interval
(``zoo.metrics.compare`` on the same test rows). Latency is the median over interleaved rounds with its spread; a
figure taken while other processes competed for the cores is marked "(noisy)" wherever it is shown.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from zoo import metrics, plan
from zoo.families import family_of
from zoo.registry import Loaded
from zoo.status import gate_passed, read_results
from zoo.store import Store, atomic_write, write_json


def report(loaded: Loaded, store: Store, model_ids: list[str], as_json: bool, console: Console) -> dict[str, Any]:
    """Write table.json and pareto.png for each model and print the tables (or one JSON document).

    Returns:
        ``{model: table}``, the same data as each table.json.
    """
    nodes = plan.make(loaded)
    out: dict[str, Any] = {}
    for mid in model_ids:
        table = family_table(loaded, store, mid, [n for n in nodes if n.model_id == mid])
        folder = store.reports(mid)
        folder.mkdir(parents=True, exist_ok=True)
        png = folder / "pareto.png"
        if pareto_plot(table, png):
            table["pareto_png"] = png.name
        else:
            png.unlink(missing_ok=True)  # an old plot would show variants that no longer have results
            table["pareto_png"] = None
        write_json(folder / "table.json", table)
        out[mid] = table
        if not as_json:
            console.print(render(table))
            for r in table["rows"]:
                if r.get("on_target") is False:
                    console.print(f"{r['variant']}: {r['perf_note']}", markup=False, highlight=False)
            where = f"{folder / 'table.json'}" + (f", {png}" if table["pareto_png"] else " (no plot: nothing "
                                                                                         "evaluated yet)")
            console.print(f"written: {where}", markup=False, highlight=False)
    if as_json:
        sys.stdout.write(json.dumps(out, indent=2, sort_keys=True, default=str) + "\n")
    return out


def family_table(loaded: Loaded, store: Store, model_id: str, nodes: list[plan.Node]) -> dict[str, Any]:
    """Rows for every variant of one model, with ratios and speed-ups against its fp32 variant."""
    model = loaded.model(model_id)
    primary = model.evaluation.primary
    results = {n.variant_id: read_results(store, n) for n in nodes}
    ref_id = next((n.variant_id for n in nodes if n.kind == "fp32"), None)
    ref = results.get(ref_id) if ref_id else None
    rows = [_row(n, store, results[n.variant_id], ref, primary, model.evaluation.seed) for n in nodes]
    _mark_pareto(rows, primary)
    return {
        "model": model_id,
        "task": model.task,
        "primary_metric": primary,
        "lower_is_better": primary in metrics.LOWER_IS_BETTER,
        "metrics": list(model.evaluation.metrics),
        "reference": ref_id,
        "batch_size": model.evaluation.batch_size,
        "seq_len": model.evaluation.seq_len,
        "input": family_of(model.task).perf_input(model.evaluation.seq_len, [r for r in results.values() if r]),
        "measured_on": sorted({r["measured_on"] for r in rows if r.get("measured_on")}),
        "threads": sorted({r["threads"] for r in rows if r.get("threads")}),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": rows,
    }


def _ratio_interval(res: dict, ref: dict | None, primary: str, seed: int) -> dict | None:
    """Paired bootstrap interval of the ratio to fp32 when both have per-row predictions on the same rows."""
    a, b = res.get("predictions"), (ref or {}).get("predictions")
    if not a or not b or not metrics.spec(primary).per_row or res is ref:
        return None
    if (res.get("test") or {}).get("indices_sha256") != (ref.get("test") or {}).get("indices_sha256"):
        return None
    cmp = metrics.compare(primary, a["labels"], a["preds"], b["preds"], a.get("n_classes"), seed)
    return {**cmp["ratio"], "agreement": round(cmp["agreement"], 4), "rows": cmp["rows"]}


def _row(node: plan.Node, store: Store, res: dict | None, ref: dict | None, primary: str,
         seed: int = 0) -> dict[str, Any]:
    status = "not built" if not store.is_built(node.hash) else "not evaluated" if res is None else "evaluated"
    row: dict[str, Any] = {"variant": node.variant_id, "kind": node.kind, "target": node.target, "hash": node.hash,
                           "status": status}
    if res is None:
        return row
    p = res.get("perf") or {}
    lat = p.get("latency_ms") or {}
    value = res["metrics"].get(primary)
    row.update({
        "metrics": res["metrics"],
        "intervals": res.get("intervals") or {},
        "ratio_interval": _ratio_interval(res, ref, primary, seed),
        "kfold": res.get("kfold"),
        "samples": res.get("samples"),
        "ratio_to_fp32": (round(metrics.ratio(primary, value, ref["metrics"][primary]), 4)
                          if ref and value is not None and primary in ref["metrics"] else None),
        "size_mb": _mb(p.get("weights_bytes")),
        "artifact_mb": _mb(p.get("size_bytes")),
        "params": p.get("params"),
        "p50_ms": (lat.get("batch_1") or {}).get("p50"),
        "p95_ms": (lat.get("batch_1") or {}).get("p95"),
        "p50_spread": (lat.get("batch_1") or {}).get("spread"),
        "p50_batch_n_ms": (lat.get("batch_N") or {}).get("p50"),
        "p50_batch_n_spread": (lat.get("batch_N") or {}).get("spread"),
        "noisy": p.get("noisy"),
        "noisy_reason": p.get("noisy_reason"),
        "others_cores": p.get("others_cores"),
        "perf_session": p.get("session"),
        "batch_n": (lat.get("batch_N") or {}).get("batch"),
        "throughput_per_s": p.get("throughput_per_s"),
        "speedup": _speedup(p, (ref or {}).get("perf")),
        "peak_rss_mb": p.get("peak_rss_mb"),
        "runtime": p.get("runtime"),
        "threads": p.get("threads"),
        "load_average_1m": p.get("load_average_1m"),
        "on_target": p.get("on_target"),
        "measured_on": p.get("measured_on"),
        "perf_note": p.get("note"),
        "gate": res.get("gate"),
        "gate_passed": gate_passed(res),
    })
    return row


def _mb(n: int | None) -> float | None:
    return None if n is None else round(n / 1e6, 3)


def _speedup(p: dict, ref: dict | None) -> float | None:
    """fp32's p50 at batch 1 over this variant's, only when both ran on the same machine."""
    if not ref or ref.get("measured_on") != p.get("measured_on"):
        return None
    mine, theirs = (p.get("latency_ms") or {}).get("batch_1", {}), (ref.get("latency_ms") or {}).get("batch_1", {})
    if not mine.get("p50") or not theirs.get("p50"):
        return None
    return round(theirs["p50"] / mine["p50"], 3)


def pick_for_target(candidates: list[tuple[float, float, str]]) -> str:
    """``zoo pull --target``'s rule: among the gate-passing variants for the target — ``(score, p50, variant)``
    with score = −metric (or +metric when lower is better), so smaller is better on both — keep the Pareto front
    (no other is at least as good on both and better on one), then take its fastest; ties go to the better metric.

    Every candidate already kept the reference's quality within the gate, so speed decides among the front.
    """
    front = [c for c in candidates if not any(o[0] <= c[0] and o[1] <= c[1] and (o[0] < c[0] or o[1] < c[1])
                                              for o in candidates)]
    return min(front, key=lambda c: (c[1], c[0], c[2]))[2]


def _mark_pareto(rows: list[dict], primary: str) -> None:
    """Flag the rows no other row beats on both latency and the primary metric (same machine only)."""
    lower = primary in metrics.LOWER_IS_BETTER
    pts = [r for r in rows if r.get("p50_ms") is not None and r["metrics"].get(primary) is not None]
    for r in pts:
        score = -r["metrics"][primary] if lower else r["metrics"][primary]
        r["pareto"] = not any(
            o is not r and o["measured_on"] == r["measured_on"] and o["p50_ms"] <= r["p50_ms"]
            and (-o["metrics"][primary] if lower else o["metrics"][primary]) >= score
            and (o["p50_ms"] < r["p50_ms"] or (-o["metrics"][primary] if lower else o["metrics"][primary]) > score)
            for o in pts)


def render(table: dict[str, Any]) -> Table:
    """The rich table for one family."""
    names = table["metrics"]
    n = table["threads"]
    threads = f", {'/'.join(map(str, n))} thread{'s' if n != [1] else ''}" if n else ""
    t = Table(title=f"{table['model']} — {_table_input(table)}, latency at batch 1, measured on "
                    f"{'; '.join(table['measured_on']) or 'nothing yet'}{threads}")
    primary = table["primary_metric"]
    ratio = f"fp32 / {primary}" if table.get("lower_is_better") else f"{primary} / fp32"  # ≥ 1: at least as good
    for col in ("variant", "kind", *names, ratio, "size MB", "p50 ms", "speed-up", "Pareto",
                "peak RSS MB", "target", "gate"):
        t.add_column(col, justify="right" if col not in ("variant", "kind", "target", "gate") else "left")
    for r in table["rows"]:
        if r["status"] != "evaluated":
            t.add_row(r["variant"], r["kind"], *["—"] * (len(names) + 6), r["target"], r["status"])
            continue
        cells = [_metric(r, m) for m in names]
        on = "" if r["on_target"] else " (not measured on it)"
        t.add_row(r["variant"], r["kind"], *cells, _ratio_cell(r), _f(r["size_mb"], "{:.1f}"), _latency(r),
                  _f(r["speedup"], "{:.2f}×") + (" (noisy)" if r.get("noisy") and r["speedup"] else ""),
                  "★" if r.get("pareto") else "", _f(r["peak_rss_mb"], "{:.0f}"),
                  r["target"] + on, _gate(r["gate"]))
    return t


def _ratio_cell(r: dict) -> str:
    iv = r.get("ratio_interval")
    text = _f(r["ratio_to_fp32"], "{:.4f}")
    return f"{text} [{iv['low']:.3f}, {iv['high']:.3f}]" if iv else text


def _latency(r: dict) -> str:
    """p50 with ± half its spread over rounds; "(noisy)" when other processes competed while timing."""
    if r.get("p50_ms") is None:
        return "—"
    spread = f" ±{r['p50_spread'] / 2:.0%}" if r.get("p50_spread") is not None else ""
    return f"{r['p50_ms']:.2f}{spread}" + (" (noisy)" if r.get("noisy") else "")


def _table_input(table: dict[str, Any]) -> str:
    return table.get("input") or f"seq {table['seq_len']}"  # tables written before "input" existed


def _metric(r: dict, m: str) -> str:
    v = r["metrics"].get(m)
    kf = (r.get("kfold") or {}).get(m)
    iv = (r.get("intervals") or {}).get(m)
    text = _f(v, "{:.4f}") + (f" [{iv['low']:.3f}, {iv['high']:.3f}]" if iv else "")
    return f"{text} ({kf['mean']:.3f}±{kf['std']:.3f})" if kf else text


def _gate(g: dict | None) -> str:
    if not g:
        return "pass"
    if "ratio" not in g:
        return ("pass: " if g.get("passed", True) else "FAILED: ") + g.get("reason", "")
    iv = g.get("interval")
    if iv:
        word = "pass" if g["passed"] else f"FAILED ({g.get('verdict')})"
        return f"{word}: lower bound {iv['low']:.4f} vs {g['min_ratio']} of {g['of']}"
    if g["passed"]:
        return f"pass {g['ratio']:.4f} ≥ {g['min_ratio']} of {g['of']} (no interval)"
    return f"FAILED {g['ratio']:.4f} < {g['min_ratio']} of {g['of']} (no interval)"


def _f(v: float | None, fmt: str) -> str:
    return "—" if v is None else fmt.format(v)


def pareto_plot(table: dict[str, Any], path: Path) -> bool:
    """Save metric vs p50 latency (marker area ∝ size on disk) as PNG; False when no variant has both figures.

    Hollow markers were measured off their target, red ones failed their gate; the dashed line joins the Pareto
    front (variants no other variant beats on both axes).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    primary = table["primary_metric"]
    pts = [r for r in table["rows"] if r.get("p50_ms") is not None and (r.get("metrics") or {}).get(primary)
           is not None]
    if not pts:
        return False
    biggest = max((r["size_mb"] or 0) for r in pts) or 1.0
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for i, r in enumerate(sorted(pts, key=lambda r: r["p50_ms"])):
        color = "tab:red" if r["gate_passed"] is False else "tab:blue"
        area = 40 + 800 * (r["size_mb"] or 0) / biggest
        ax.scatter(r["p50_ms"], r["metrics"][primary], s=area, edgecolors=color, linewidths=1.5,
                   facecolors=color if r["on_target"] else "none", alpha=0.7)
        # alternate labels above and below so neighbours with close latencies stay readable
        ax.annotate(f"{r['variant']} ({r['size_mb'] or 0:.3g} MB)", (r["p50_ms"], r["metrics"][primary]),
                    textcoords="offset points", xytext=(8, 8 if i % 2 == 0 else -14), fontsize=8)
    front = sorted((r for r in pts if r.get("pareto")), key=lambda r: r["p50_ms"])
    if len(front) > 1:
        ax.plot([r["p50_ms"] for r in front], [r["metrics"][primary] for r in front], "--", color="grey", lw=1)
    lats = [r["p50_ms"] for r in pts]
    if min(lats) > 0 and max(lats) / min(lats) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(f"p50 latency, batch 1, {_table_input(table)} (ms) — measured on "
                  f"{'; '.join(table['measured_on'])}", fontsize=8)
    ax.set_ylabel(primary + (" (lower is better)" if primary in metrics.LOWER_IS_BETTER else ""))
    ax.set_title(f"{table['model']}: {primary} vs latency (marker area ∝ size; hollow = not on its target; "
                 "red = gate failed)", fontsize=8)
    ax.margins(x=0.15, y=0.12)  # room for the labels of the outermost points
    ax.grid(alpha=0.3)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write(path, buf.getvalue())
    return True
