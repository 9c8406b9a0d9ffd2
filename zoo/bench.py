"""``zoo bench``: time a published variant on the user's machine, beside the figures its card was made from.

The variant is a built one in the store (``MODEL:VARIANT``), one pulled from the hub when it is not built here, or
any variant folder (``zoo pull`` writes ``results.json`` next to the weights). It is timed with the zoo's own
protocol (``zoo.perf.measure_family``: rounds in fresh processes, median with spread, noisy marking and a re-run
when noisy), at the batch size and sequence length the card's figures used, and printed beside those figures with
the machine each came from and the ratio.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from zoo import formats, machine, perf
from zoo.errors import UsageError, ZooError

BENCH_DIR = "bench"  # pulled variants are cached under the store's folder of this name


def bench(what: str, loaded: Any = None, store: Any = None, hub: str = "local", rounds: int = perf.ROUNDS,
          log=print, retries: int = 1) -> dict[str, Any]:
    """Measure ``what`` (a folder, or ``MODEL:VARIANT`` with ``loaded``/``store``) here and compare with its card.

    Returns:
        ``{"variant", "folder", "card": perf figures or None, "here": perf figures, "ratios": {...}}``; a ratio is
        the card's p50 over this machine's (above 1: faster here).

    Raises:
        UsageError: neither a folder nor a known ``MODEL:VARIANT``.
        ZooError: the variant is neither built here nor published, or timing failed.
    """
    folder, label, results_path = _resolve(what, loaded, store, hub, log)
    card = json.loads(results_path.read_text()) if results_path.is_file() else {}
    card_perf = card.get("perf") or None
    batch, seq_len = _shape(card_perf, loaded, label)
    task = card.get("task") or formats.task_of(folder)
    log(f"timing {label} here: {rounds} rounds in fresh processes, batch 1 and {batch}, seq {seq_len}")
    item = perf.Item(label, folder, task)
    here = perf.measure_family([item], batch, seq_len, 20, rounds=rounds, retries=retries, log=log)[label]
    here["measured_on"] = machine.fingerprint()["name"]
    ratios = {}
    for key in ("batch_1", "batch_N"):
        mine = (here["latency_ms"].get(key) or {}).get("p50")
        theirs = (((card_perf or {}).get("latency_ms") or {}).get(key) or {}).get("p50")
        ratios[key] = round(theirs / mine, 3) if mine and theirs else None
    return {"variant": label, "folder": str(folder), "card": card_perf, "here": here, "ratios": ratios,
            "batch": batch, "seq_len": seq_len}


def _resolve(what: str, loaded: Any, store: Any, hub: str, log) -> tuple[Path, str, Path]:
    """(variant folder, its name, where its published results.json is)."""
    folder = Path(what)
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ZooError(f"{folder}: no config.json: not a variant folder (pull one with `zoo pull MODEL "
                           f"--variant V`)")
        prov = formats.read_provenance(folder)
        name = f"{prov.get('model', '')}:{prov.get('variant', '')}".strip(":") or folder.name
        return folder, name, folder / "results.json"
    from zoo import ids, plan

    model, variant = ids.parse_selector(what)
    if loaded is None or model is None or variant is None:
        raise UsageError(f"bench: '{what}' is neither a folder nor MODEL:VARIANT")
    pairs = loaded.select(model, variant, include_nondefault=True)
    node = next(n for n in plan.make(loaded) if (n.model_id, n.variant_id) in set(pairs))
    if store.is_built(node.hash) and store.results(node.hash).is_file():
        return store.artifact(node.hash), node.key, store.results(node.hash)
    from zoo import hub as hub_mod

    dest = store.root / BENCH_DIR / f"{model}-{variant}"
    log(f"{node.key} is not built here: pulling it from the {hub} hub into {dest}")
    folder = hub_mod.pull(loaded, store, model, variant=variant, hub=hub, dest=dest)
    return folder, node.key, folder / "results.json"


def _shape(card_perf: dict | None, loaded: Any, label: str) -> tuple[int, int]:
    """Batch size and sequence length of the card's figures, else the registry's evaluation, else 8 × 128."""
    lat = (card_perf or {}).get("latency_ms") or {}
    batch = (lat.get("batch_N") or {}).get("batch")
    seq_len = (card_perf or {}).get("seq_len")
    if (batch is None or seq_len is None) and loaded is not None and ":" in label:
        ev = loaded.model(label.split(":")[0]).evaluation
        batch, seq_len = batch or ev.batch_size, seq_len or ev.seq_len
    return int(batch or 8), int(seq_len or 128)


def render(got: dict[str, Any]) -> Table:
    """The comparison as a rich table: figure, the card's (machine), here (machine), card ÷ here."""
    card, here = got["card"] or {}, got["here"]
    t = Table(title=f"{got['variant']}: the card's speed and this machine's (seq {got['seq_len']})",
              caption="card ÷ here above 1: faster here. '(noisy)': other processes competed for the cores "
                      "while timing, or the rounds disagreed; read such a figure as a bound, not a measurement")
    t.add_column("figure")
    t.add_column(f"card ({card.get('measured_on') or 'no figures published'})", justify="right")
    t.add_column(f"here ({here['measured_on']})", justify="right")
    t.add_column("card ÷ here", justify="right")
    for key, name in (("batch_1", "p50 latency, batch 1"), ("batch_N", f"p50 latency, batch {got['batch']}")):
        ratio = got["ratios"].get(key)
        t.add_row(name, perf.label(card, key) if card else "—", perf.label(here, key),
                  "—" if ratio is None else f"{ratio:.2f}×")
    t.add_row("others' CPU while timing (cores)", _f(card.get("others_cores")), _f(here.get("others_cores")), "")
    t.add_row("threads", str(card.get("threads", "—")), str(here.get("threads", "—")), "")
    t.add_row("peak RSS MB", _f(card.get("peak_rss_mb"), "{:.0f}"), _f(here.get("peak_rss_mb"), "{:.0f}"), "")
    return t


def _f(v: float | None, fmt: str = "{:.2f}") -> str:
    return "—" if v is None else fmt.format(v)
