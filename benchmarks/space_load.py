"""Load test of a family's demo Space: N concurrent gradio_client clients × M requests each, on loopback.

    python benchmarks/space_load.py [--registry registry.yaml] [--model MODEL] [--clients 50] [--requests 10]

The variants must be pushed to the local hub first (`zoo run`). Prints requests, errors, p50/p95/max latency,
throughput and the queue bound the Space runs with. Exits non-zero if any request failed.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300.0):
    from gradio_client import Client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the Space exited with status {proc.returncode} before it was ready")
        try:
            return Client(url, verbose=False)
        except Exception:  # not listening yet
            time.sleep(1.0)
    raise SystemExit(f"the Space at {url} was not ready after {timeout:.0f} s")


def client_run(url: str, texts: list[str], requests: int, seed: int) -> tuple[list[float], list[str]]:
    from gradio_client import Client

    latencies, errors = [], []
    client = Client(url, verbose=False)
    for i in range(requests):
        text = texts[(seed + i) % len(texts)]
        t = time.perf_counter()
        try:
            client.predict(text, api_name="/classify")
            latencies.append(time.perf_counter() - t)
        except Exception as e:  # every failure is counted and reported, none is hidden
            errors.append(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return latencies, errors


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--registry", type=Path, default=Path("registry.yaml"))
    ap.add_argument("--model", default=None, help="the family; the first default model if omitted")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=10)
    args = ap.parse_args()

    from zoo import registry, space
    from zoo.store import Store, read_json

    loaded = registry.load(args.registry)
    store = Store.for_registry(loaded.path)
    model = args.model or next(m for m, spec in loaded.registry.models.items() if spec.default)
    folder = space.render(loaded, store, model)
    config = read_json(folder / "variants.json")
    texts = read_json(folder / "examples.json")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    from zoo.hub.server import HubServer

    hub_server = HubServer(store.hub).start()  # the app loads its variants over HTTP, as on a Space
    env = {**os.environ, **space.hub_env(hub_server.url, hub_server.token, store), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    # the app's log goes to a file: an unread pipe fills up and blocks the server's event loop mid-run
    log = tempfile.NamedTemporaryFile(prefix="space-load-", suffix=".log", delete=False)  # noqa: SIM115 (kept)
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(url, proc)
        print(f"Space {model}: {len(config['variants'])} variants, queue max_size {config['queue_size']}, "
              f"concurrency {config['concurrency']}; {args.clients} clients x {args.requests} requests")
        start = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            runs = list(pool.map(lambda i: client_run(url, texts, args.requests, i), range(args.clients)))
        wall = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        hub_server.stop()
    latencies = [x for lat, _ in runs for x in lat]
    errors = [e for _, errs in runs for e in errs]
    total = args.clients * args.requests
    print(f"requests {total}  ok {len(latencies)}  errors {len(errors)}  wall {wall:.1f} s  "
          f"throughput {len(latencies) / wall:.2f} req/s")
    if latencies:
        print(f"latency s: p50 {statistics.median(latencies):.2f}  p95 {pct(latencies, 0.95):.2f}  "
              f"max {max(latencies):.2f}  (each request runs all {len(config['variants'])} variants; latency "
              "includes time waiting in the queue)")
    for e in sorted(set(errors))[:5]:
        print(f"error x{errors.count(e)}: {e}")
    print(f"app log: {log.name}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
