"""``zoo fsck``: check the store for damage at rest and, with ``--repair``, move damaged things out of the way so that
the next ``zoo run`` rebuilds them.

What is checked: each artifact against the sha256s its provenance records (and for files it does not record), each
``<hash>.results.json`` (valid, and the results of that build), each staged repo and Space (valid JSON, artifact files
unchanged), and leftovers of killed runs (``.tmp-*`` temps, ``.old-*`` folders). A damaged artifact is moved to
``quarantine/`` (kept for a post-mortem, out of the build's way); damaged results, staged repos and Spaces are
removed (they are rebuilt from the artifact by ``zoo eval`` / ``zoo card`` / ``zoo space``).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from zoo import verify
from zoo.errors import ZooError
from zoo.store import Store, clean_temp

_HASH = re.compile(r"^[0-9a-f]{16}$")


@dataclass
class Report:
    checked: int = 0
    damaged: list[str] = field(default_factory=list)  # one line each
    repaired: list[str] = field(default_factory=list)


def run(store: Store, repair: bool = False, log=print) -> Report:
    """Check (and with ``repair``, fix) the store; print one line per problem and a summary.

    Returns:
        What was found and what was done.
    """
    report = Report()
    if not store.root.is_dir():
        log(f"{store.root}: no store yet (nothing built): nothing to check")
        return report
    with store.lock(log=log):
        _artifacts(store, report, repair)
        _staged(store, report, repair)
        _leftovers(store, report, repair)
        check_hub(store, report, repair, log)
    for line in report.damaged:
        log(line)
    for line in report.repaired:
        log(f"repaired: {line}")
    verdict = ("clean" if not report.damaged else
               f"{len(report.damaged)} problems" + ("" if repair else ": run `zoo fsck --repair`, then `zoo run`"))
    log(f"fsck {store.root}: {report.checked} items checked, {verdict}"
        + (f", {len(report.repaired)} repaired" if repair else ""))
    return report


def check_hub(store: Store, report: Report, repair: bool, log) -> None:
    """The embedded hub's own check: every object against its content address, every commit's files present."""
    from zoo.hub import fsck as hub_fsck

    if not store.hub.is_dir():
        return
    hub = hub_fsck(store, repair=repair)
    report.checked += hub.objects
    if hub.ok:
        return
    report.damaged += [f"{store.hub}: {line}" for line in hub.lines()[1:]]
    if repair and hub.damaged:
        report.repaired.append(f"{len(hub.damaged)} damaged hub objects quarantined (`zoo push` uploads them again)")


def _quarantine(store: Store, path: Path) -> Path:
    dest = store.root / "quarantine" / f"{path.name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    path.rename(dest)
    return dest


def _artifacts(store: Store, report: Report, repair: bool) -> None:
    arts = store.root / "artifacts"
    if not arts.is_dir():
        return
    for art in sorted(p for p in arts.iterdir() if p.is_dir() and not p.name.startswith((".tmp-", ".old-"))):
        report.checked += 1
        key = f"build {art.name}"
        bad: list[str] = []
        try:
            prov = verify.provenance(art, key)
            key = f"{prov.get('model')}:{prov.get('variant')}"
            bad = verify.problems(art, prov["files"])
            recorded = set(prov["files"]) | {"provenance.json"}
            bad += [f"{f}: not recorded in provenance.json" for f in sorted(art.rglob("*"))
                    if f.is_file() and f.relative_to(art).as_posix() not in recorded]
        except ZooError as e:
            bad = [str(e).split(": run `zoo build")[0]]
        if not bad:
            continue
        results = store.results(art.name)
        report.damaged += [f"{line}: {verify.rebuild_fix(key)}" for line in bad]
        if repair:
            dest = _quarantine(store, art)
            if results.exists():
                results.unlink()
            report.repaired.append(f"{art} moved to {dest} (`zoo build {key}` builds it again)")
    for res in sorted(arts.glob("*.results.json")):
        report.checked += 1
        h = res.name.removesuffix(".results.json")
        try:
            data = verify.read_json(res, "")
            if data.get("hash") != h:
                raise ZooError(f"{res}: holds the results of build {data.get('hash')}, not {h}")
            if not (arts / h / "provenance.json").is_file() and _HASH.match(h):
                raise ZooError(f"{res}: results of build {h}, which is not in the store")
        except ZooError as e:
            report.damaged.append(f"{str(e).rstrip(': ')}: `zoo eval` evaluates it again")
            if repair:
                res.unlink()
                report.repaired.append(f"{res} removed")


def _staged(store: Store, report: Report, repair: bool) -> None:
    for kind in ("repos", "spaces"):
        top = store.root / kind
        if not top.is_dir():
            continue
        for folder in sorted(p for p in top.iterdir() if p.is_dir() and not p.name.startswith((".tmp-", ".old-"))):
            report.checked += 1
            bad = []
            for f in sorted(folder.rglob("*.json")):
                try:
                    verify.read_json(f, "", object)
                except ZooError as e:
                    bad.append(str(e).rstrip(": "))
            prov_path = folder / "provenance.json"
            if kind == "repos" and prov_path.is_file() and not bad:
                prov = verify.read_json(prov_path, "")
                files = prov.get("files") if isinstance(prov.get("files"), dict) else {}
                adapter = folder.name.endswith("-adapter") and not (folder / "adapter").is_dir()
                bad += verify.problems(folder, files, skip=verify.STAGED_OWN | {"provenance.json"},
                                       prefix="adapter/" if adapter else "", may_lack=("adapter/",))
            if not bad:
                continue
            fix = "`zoo card` stages it again" if kind == "repos" else "`zoo space` renders it again"
            report.damaged += [f"{line}: {fix}" for line in bad]
            if repair:
                shutil.rmtree(folder)
                report.repaired.append(f"{folder} removed")


def _leftovers(store: Store, report: Report, repair: bool) -> None:
    found = [p for pattern in ("**/.tmp-*", "**/.old-*") for p in store.root.glob(pattern)]
    if not found:
        return
    if not repair:
        report.damaged += [f"{p}: left by a killed run: `zoo fsck --repair` removes it once its writer is gone"
                           for p in found if ".tmp-" not in str(p.parent)]
        return
    report.damaged += [f"{p}: left by a killed run" for p in found if ".tmp-" not in str(p.parent)]
    report.repaired += [f"{p} removed" for p in clean_temp(store.root)]
