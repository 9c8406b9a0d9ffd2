"""Memory of the demo Space under large request bodies, side by side: the app under ``demo.launch()`` (as a Space
runs it, no body limit) and under ``zoo demo`` (``zoo.demo_server``: 413 above the body limit, before reading).

    python benchmarks/demo_memory.py [--registry registry.yaml] [--model MODEL] [--bodies 3] [--mb 200] [--requests 100]
    python benchmarks/demo_memory.py --minimal PYTHON [PYTHON ...]   # gradio's own retention, per interpreter

The family's variants must be pushed to the local hub first (`zoo run`). For each server: RSS when ready, after
``--bodies`` POSTs of ``--mb`` MB each to the classify endpoint, and after ``--requests`` ordinary requests; then the
ratio of the growth. Prints the gradio version, since gradio's own retention of request data changes across versions.

``--minimal`` runs, under each given interpreter (e.g. venvs with different gradio versions), a model-free app with
the text Space's input path (a Textbox, the same length check raising ``gr.Error``, the same queue settings) under
``demo.launch()``: whether a gradio upgrade alone bounds the memory.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 1e6


def wait_url(proc: subprocess.Popen, log: Path, pattern: str | None, url: str | None, timeout: float = 300) -> str:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        if pattern and (m := re.search(pattern, log.read_text())):
            url = m.group(1)
        if url:
            try:
                with urllib.request.urlopen(url + "/", timeout=5):
                    return url
            except OSError:
                pass
        time.sleep(0.5)
    raise SystemExit(f"the server did not answer within {timeout:.0f} s:\n{log.read_text()[-2000:]}")


def post_body(url: str, mb: int) -> str:
    """POST a JSON body of ``mb`` MB (one huge text) to the classify endpoint; returns what came back."""
    host, port = url.removeprefix("http://").split(":")
    body = b'{"data": ["' + b"x" * (mb * 1_000_000) + b'"]}'
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    try:
        conn.request("POST", "/gradio_api/call/classify", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return str(response.status)
    except (ConnectionError, http.client.HTTPException) as e:
        return f"connection closed by the server ({type(e).__name__})"
    finally:
        conn.close()
        del body


def ordinary(url: str, n: int) -> int:
    """``n`` ordinary requests through gradio's HTTP API (POST, then read the result stream); returns how many
    answered. Plain HTTP, so the same code drives any gradio version."""
    import urllib.request

    ok = 0
    for i in range(n):
        body = json.dumps({"data": [f"a warm and moving film, number {i}"]}).encode()
        req = urllib.request.Request(url + "/gradio_api/call/classify", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            event = json.loads(r.read())["event_id"]
        with urllib.request.urlopen(f"{url}/gradio_api/call/classify/{event}", timeout=60) as r:
            ok += b"event: complete" in r.read()
    return ok


def measure(name: str, cmd: list[str], cwd: Path, env: dict, pattern: str | None, url: str | None, args) -> dict:
    import psutil

    log = Path(tempfile.mkstemp(prefix=f"demo-{name}-", suffix=".log")[1])
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = wait_url(proc, log, pattern, url)
        kids = psutil.Process(proc.pid).children(recursive=True)
        server = next((k.pid for k in kids if "zoo.demo_server" in " ".join(k.cmdline())), proc.pid)
        time.sleep(2)
        row = {"server": name, "ready_mb": rss_mb(server)}
        row["answers"] = [post_body(url, args.mb) for _ in range(args.bodies)]
        time.sleep(2)
        row["after_bodies_mb"] = rss_mb(server)
        row["ordinary_ok"] = ordinary(url, args.requests)
        row["after_requests_mb"] = rss_mb(server)
        return row
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.unlink(missing_ok=True)


MINIMAL_APP = """
import gradio as gr

MAX_CHARS = 1000


def classify(text):
    if len(text or "") > MAX_CHARS:
        raise gr.Error(f"The text has {len(text)} characters; the limit is {MAX_CHARS}. Shorten it.")
    return {"fresh": 0.5, "rotten": 0.5}


with gr.Blocks() as demo:
    text = gr.Textbox()
    label = gr.Label()
    gr.on([text.submit], classify, inputs=[text], outputs=[label], api_name="classify")
demo.queue(max_size=64, default_concurrency_limit=2)
demo.launch()
"""


def minimal(pythons: list[str], args) -> None:
    folder = Path(tempfile.mkdtemp(prefix="demo-minimal-"))
    (folder / "app.py").write_text(MINIMAL_APP)
    print(f"{args.bodies} bodies of {args.mb} MB, then {args.requests} ordinary requests, model-free app")
    print(f"{'gradio':<10} {'ready MB':>9} {'after bodies':>13} {'after requests':>15}  answers to the bodies")
    for python in pythons:
        version = subprocess.run([python, "-c", "import gradio; print(gradio.__version__)"], capture_output=True,
                                 text=True).stdout.strip()
        port = free_port()
        env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
               "GRADIO_ANALYTICS_ENABLED": "False"}
        r = measure(version, [python, "app.py"], folder, env, None, f"http://127.0.0.1:{port}", args)
        print(f"{version:<10} {r['ready_mb']:9.0f} {r['after_bodies_mb']:13.0f} {r['after_requests_mb']:15.0f}  "
              f"{json.dumps(sorted(set(r['answers'])))}")


def main() -> None:
    import gradio

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", default="registry.yaml")
    parser.add_argument("--model", default=None)
    parser.add_argument("--bodies", type=int, default=3)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--minimal", nargs="+", metavar="PYTHON", help="only the model-free app, per interpreter")
    args = parser.parse_args()
    if args.minimal:
        return minimal(args.minimal, args)

    from zoo import registry, space
    from zoo.store import Store

    loaded = registry.load(args.registry)
    model = args.model or next(m for m, v in loaded.registry.models.items() if v.default)
    store = Store.for_registry(loaded.path)
    folder = space.render(loaded, store, model)
    env = {**os.environ, "ZOO_LOCAL_HUB": str(store.hub), "GRADIO_ANALYTICS_ENABLED": "False",
           "HF_HUB_OFFLINE": "1"}
    port = free_port()
    launch = measure("demo.launch()", [sys.executable, "app.py"], folder,
                     {**env, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}, None,
                     f"http://127.0.0.1:{port}", args)
    zoo_demo = measure("zoo demo", [sys.executable, "-m", "zoo", "demo", model, "-r", str(loaded.path), "--port",
                                    "0"], loaded.root, env, r"serving on (http://127\.0\.0\.1:\d+)", None, args)
    print(f"gradio {gradio.__version__}; {args.bodies} bodies of {args.mb} MB, then {args.requests} ordinary requests")
    print(f"{'server':<16} {'ready MB':>9} {'after bodies':>13} {'after requests':>15}  answers to the bodies")
    for r in (launch, zoo_demo):
        print(f"{r['server']:<16} {r['ready_mb']:9.0f} {r['after_bodies_mb']:13.0f} {r['after_requests_mb']:15.0f}  "
              f"{json.dumps(sorted(set(r['answers'])))}")
    grow = {r["server"]: r["after_bodies_mb"] - r["ready_mb"] for r in (launch, zoo_demo)}
    print(f"RSS growth from the bodies: demo.launch() {grow['demo.launch()']:.0f} MB, zoo demo "
          f"{grow['zoo demo']:.0f} MB (ratio {grow['demo.launch()'] / max(grow['zoo demo'], 1):.0f}x)")


if __name__ == "__main__":
    main()
