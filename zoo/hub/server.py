"""``zoo hub serve``: the embedded hub, an HTTP server speaking the part of the Hugging Face Hub API that
huggingface_hub, transformers, peft and gradio use, over ``storage.HubStorage``.

Endpoints (``{t}`` is ``model``/``dataset``/``space``; model URLs have no type prefix, the others ``datasets/`` and
``spaces/``): ``POST /api/repos/create``, ``DELETE /api/repos/delete``, ``GET /api/{t}s/{repo}[/revision/{rev}]``,
``GET /api/{t}s/{repo}/tree/{rev}[/{path}]``, ``POST /api/{t}s/{repo}/paths-info/{rev}``,
``POST /api/{t}s/{repo}/preupload/{rev}``, ``POST /api/{t}s/{repo}/commit/{rev}`` (NDJSON),
``GET /api/{t}s/{repo}/refs``, ``POST /api/{t}s/{repo}/tag/{rev}``, ``DELETE /api/{t}s/{repo}/tag/{tag}``,
``PUT /api/{t}s/{repo}/settings``, ``GET /api/{t}s/{repo}/commits/{rev}``, ``POST /api/validate-yaml``,
``POST {prefix}{repo}.git/info/lfs/objects/batch``,
``HEAD|GET {prefix}{repo}/resolve/{rev}/{path}``, ``POST|GET /api/collections[/{slug}[/items]]``,
``GET /api/whoami-v2``. Errors carry the Hub's ``X-Error-Code`` / ``X-Error-Message`` headers and ``{"error"}``
bodies, so huggingface_hub raises the same exception classes as against huggingface.co.

Auth: a request may carry ``Authorization: Bearer <token>``; writes need the hub's token (a wrong token is 401),
private repos are invisible without it and gated repos need it to download. LFS objects are served by a redirect
to a signed URL (``/lfs-objects/...``), as the Hub redirects to its CDN.

``Faults`` injects failures for tests: 5xx for the next N requests, a reply lost after a commit succeeded, refused
connections for a while, slow replies.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import json
import re
import secrets
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from zoo.hub.storage import SHA256, FileEntry, HubStorage, HubStorageError, check_path, git_blob_sha1, lfs_pointer

LFS_MIN_SIZE = 10 * 1000 * 1000  # files this large go through LFS, as on the Hub
LFS_SUFFIXES = (".safetensors", ".bin", ".onnx", ".onnx_data", ".pt", ".pth", ".gguf", ".png", ".jpg", ".jpeg",
                ".h5", ".msgpack", ".ckpt", ".npz", ".npy", ".pkl", ".zip", ".tar", ".gz", ".model", ".data")
PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_CHUNK = 1 << 20


@dataclass
class Faults:
    """Failures the server injects, for tests. Every counter counts down as requests arrive."""

    fail_next: int = 0  # answer the next N requests with ``fail_status``
    fail_status: int = 503
    lose_commit_replies: int = 0  # apply the next N commits, then close the connection without answering
    slow_next: int = 0  # sleep ``slow_seconds`` before answering the next N requests
    slow_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, name: str) -> bool:
        with self.lock:
            n = getattr(self, name)
            if n > 0:
                setattr(self, name, n - 1)
                return True
            return False


class _Lost(Exception):
    """Close the connection without an answer (a reply lost on the way)."""


class HubServer:
    """The hub over ``root``, served on ``host:port`` (0: a free port) by a thread pool until ``stop()``."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0, token: str | None = None):
        self.storage = HubStorage(root)
        self.token = token or self.storage.token()
        self.faults = Faults()
        self.requests: Counter[str] = Counter()  # "type:repo_id" (or "other") -> requests served
        self._secret = secrets.token_bytes(16)
        self._host, self._port = host, port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = self._host if ":" not in self._host else f"[{self._host}]"
        return f"http://{host}:{self._port}"

    def bind(self) -> HubServer:
        """Listen (the port is known from here on); ``start`` or ``serve_forever`` then answers."""
        if self._httpd is None:
            handler = type("Handler", (_Handler,), {"hub": self})
            self._httpd = _Server((self._host, self._port), handler)
            self._port = self._httpd.server_address[1]
        return self

    def start(self) -> HubServer:
        self.bind()
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"zoo-hub-{self._port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def refuse_for(self, seconds: float) -> None:
        """Stop listening (connections are refused) and listen again on the same port after ``seconds``."""
        self.stop()

        def reopen() -> None:
            time.sleep(seconds)
            self.start()

        threading.Thread(target=reopen, daemon=True).start()

    def serve_forever(self) -> None:
        self.bind()
        assert self._httpd is not None
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def sign(self, sha256: str) -> str:
        return hmac.new(self._secret, sha256.encode(), hashlib.sha256).hexdigest()[:32]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


class _Reply(Exception):
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None):
        self.status, self.body, self.headers = status, body, headers or {}


def _error(status: int, message: str, code: str | None = None) -> _Reply:
    headers = {"X-Error-Message": message.splitlines()[0][:500]}
    if code:
        headers["X-Error-Code"] = code
    return _Reply(status, {"error": message}, headers)


_API_REPO = re.compile(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+?)(?:/(revision|tree|paths-info|preupload|commit|"
                       r"refs|tag|settings|commits)(?:/(.*))?)?$")
_LFS_BATCH = re.compile(r"^/(datasets/|spaces/)?([^/]+/[^/]+?)\.git/info/lfs/objects/batch$")
_RESOLVE = re.compile(r"^/(datasets/|spaces/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"
    server_version = "zoo-hub"

    def log_message(self, format: str, *args: Any) -> None:  # the console shows the zoo, not access logs
        pass

    # -- plumbing ------------------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        self._body_read = False
        faults = self.hub.faults
        if faults.take("slow_next"):
            time.sleep(faults.slow_seconds)
        try:
            if faults.take("fail_next"):
                self._drain()
                raise _error(faults.fail_status, f"{HTTPStatus(faults.fail_status).phrase} (injected fault)")
            self._route()
        except _Reply as r:
            self._drain()
            self._send(r.status, r.body, r.headers)
        except HubStorageError as e:
            self._drain()
            r = _error(e.status, e.message, e.code)
            self._send(r.status, r.body, r.headers)
        except _Lost:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body is not None and not isinstance(body, bytes):
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _read_body(self) -> bytes:
        self._body_read = True
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = io.BytesIO()
            for chunk in self._chunks():
                out.write(chunk)
            return out.getvalue()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _chunks(self):
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return
            yield self.rfile.read(size)
            self.rfile.readline()

    def _body_stream(self):
        """The request body as a file-like object, read as it arrives (LFS uploads)."""
        self._body_read = True
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return _IterReader(self._chunks())
        return _LimitedReader(self.rfile, int(self.headers.get("Content-Length") or 0))

    def _drain(self) -> None:
        if not getattr(self, "_body_read", False):
            self._read_body()

    def _json(self) -> Any:
        raw = self._read_body()
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            raise _error(400, "Invalid JSON body") from None

    def _authorized(self) -> bool:
        """True with the hub's token; raises 401 for a wrong one; False without one."""
        auth = self.headers.get("Authorization", "")
        if not auth.lower().startswith("bearer "):
            return False
        if hmac.compare_digest(auth[7:].strip(), self.hub.token):
            return True
        raise _error(401, "Invalid credentials in Authorization header")

    def _need_write(self) -> None:
        if not self._authorized():
            raise _error(401, "Invalid username or password.")

    def _repo(self, repo_type: str, repo_id: str, write: bool = False, download: bool = False) -> dict[str, Any]:
        """The repo's settings, after the access checks (a private repo is invisible without the token)."""
        storage = self.hub.storage
        authorized = self._authorized()
        if write and not authorized:
            raise _error(401, "Invalid username or password.")
        try:
            exists = storage.exists(repo_type, repo_id)
        except HubStorageError:
            exists = False
        if not exists:
            raise _error(404 if authorized else 401, "Repository not found", "RepoNotFound")
        settings = storage.settings(repo_type, repo_id)
        if settings.get("private") and not authorized:
            raise _error(401, "Repository not found", "RepoNotFound")
        if download and settings.get("gated") and not authorized:
            raise _error(401, f"Access to model {repo_id} is restricted. You must have access to it and be "
                              "authenticated to access it. Please log in.", "GatedRepo")
        return settings

    def _count(self, key: str) -> None:
        with self.hub.faults.lock:
            self.hub.requests[key] += 1

    def _revision(self, repo_type: str, repo_id: str, revision: str) -> str:
        commit = self.hub.storage.resolve(repo_type, repo_id, revision)
        if commit is None:
            raise _error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # -- routing -------------------------------------------------------------------------------------------------

    def _route(self) -> None:
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        raw_path = url.path
        if m := _API_REPO.match(raw_path):
            repo_type, repo_id = _TYPES[m.group(1)], unquote(m.group(2))
            self._count(f"{repo_type}:{repo_id}")
            action, rest = m.group(3), unquote(m.group(4) or "")
            return self._api_repo(repo_type, repo_id, action, rest, query)
        if m := _LFS_BATCH.match(raw_path):
            repo_type = {None: "model", "datasets/": "dataset", "spaces/": "space"}[m.group(1)]
            self._count(f"{repo_type}:{m.group(2)}")
            return self._lfs_batch(repo_type, unquote(m.group(2)))
        if m := _RESOLVE.match(raw_path):
            repo_type = {None: "model", "datasets/": "dataset", "spaces/": "space"}[m.group(1)]
            self._count(f"{repo_type}:{unquote(m.group(2))}")
            return self._resolve(repo_type, unquote(m.group(2)), unquote(m.group(3)), unquote(m.group(4)))
        self._count("other")
        if path.startswith("/lfs-objects/"):
            return self._lfs_object(path.rsplit("/", 1)[-1], query)
        if path.startswith("/lfs-upload/") and self.command == "PUT":
            return self._lfs_upload(path.rsplit("/", 1)[-1], query)
        if path.startswith("/lfs-verify/") and self.command == "POST":
            return self._lfs_verify(path.rsplit("/", 1)[-1], query)
        if path == "/api/repos/create" and self.command == "POST":
            return self._create_repo()
        if path == "/api/repos/delete" and self.command == "DELETE":
            return self._delete_repo()
        if path == "/api/whoami-v2":
            if not self._authorized():
                raise _error(401, "Invalid username or password.")
            return self._send(200, {"type": "user", "name": "zoo", "fullname": "zoo hub owner", "orgs": [],
                                    "auth": {"type": "access_token", "accessToken": {"role": "write",
                                                                                     "displayName": "zoo"}}})
        if path == "/api/validate-yaml" and self.command == "POST":
            problems = card_problems(str(self._json().get("content", "")).encode())
            body = {"errors": [{"message": p} for p in problems], "warnings": []}
            return self._send(400 if problems else 200, body)
        if path.startswith("/api/collections"):
            return self._collections(path[len("/api/collections"):].strip("/"))
        raise _error(404, f"Sorry, we can't find the page you are looking for: {self.command} {path}")

    def _api_repo(self, repo_type: str, repo_id: str, action: str | None, rest: str, query: dict) -> None:
        method = self.command
        if action in (None, "revision") and method == "GET":
            return self._info(repo_type, repo_id, rest or "main", query)
        if action == "tree" and method == "GET":
            revision, _, sub = rest.partition("/")
            return self._tree(repo_type, repo_id, revision or "main", sub, query)
        if action == "paths-info" and method == "POST":
            return self._paths_info(repo_type, repo_id, rest or "main")
        if action == "preupload" and method == "POST":
            return self._preupload(repo_type, repo_id, rest or "main")
        if action == "commit" and method == "POST":
            return self._commit(repo_type, repo_id, rest or "main")
        if action == "refs" and method == "GET":
            self._repo(repo_type, repo_id)
            refs = self.hub.storage.refs(repo_type, repo_id)
            return self._send(200, {k: [{"name": n, "ref": f"refs/{'heads' if k == 'branches' else 'tags'}/{n}",
                                         "targetCommit": c} for n, c in v.items()] for k, v in refs.items()}
                              | {"converts": [], "pullRequests": []})
        if action == "tag" and method == "POST":
            self._repo(repo_type, repo_id, write=True)
            body = self._json()
            commit = self._revision(repo_type, repo_id, rest or "main")
            self.hub.storage.create_tag(repo_type, repo_id, str(body.get("tag", "")), commit)
            return self._send(200, {})
        if action == "tag" and method == "DELETE":
            self._repo(repo_type, repo_id, write=True)
            self.hub.storage.delete_tag(repo_type, repo_id, rest)
            return self._send(200, {})
        if action == "settings" and method == "PUT":
            self._repo(repo_type, repo_id, write=True)
            body = self._json()
            changes = {k: body[k] for k in ("gated", "private") if k in body}
            if "visibility" in body:
                changes["private"] = body["visibility"] == "private"
            if "gated" in changes and changes["gated"] not in (False, "auto", "manual"):
                raise _error(400, "gated must be false, 'auto' or 'manual'")
            self.hub.storage.update_settings(repo_type, repo_id, **changes)
            return self._send(200, {})
        if action == "commits" and method == "GET":
            self._repo(repo_type, repo_id)
            commit = self._revision(repo_type, repo_id, rest or "main")
            return self._send(200, [{"id": c.id, "title": c.message.splitlines()[0] if c.message else "",
                                     "message": c.message, "date": c.time, "authors": [{"user": "zoo"}]}
                                    for c in self.hub.storage.history(repo_type, repo_id, commit)])
        raise _error(404, f"Sorry, we can't find the page you are looking for: {method} {self.path}")

    # -- repos ---------------------------------------------------------------------------------------------------

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.hub.url}/{PREFIX[repo_type]}{repo_id}"

    def _create_repo(self) -> None:
        self._need_write()
        body = self._json()
        repo_type = body.get("type") or "model"
        name, org = str(body.get("name", "")), body.get("organization")
        repo_id = f"{org}/{name}" if org else name
        if repo_type not in PREFIX:
            raise _error(400, f"Invalid repo type '{repo_type}'")
        if repo_type == "space" and body.get("sdk") not in ("gradio", "streamlit", "docker", "static"):
            raise _error(400, "Space SDK is required: gradio, streamlit, docker or static")
        url = self._repo_url(repo_type, repo_id)
        private = bool(body.get("private")) or body.get("visibility") == "private"  # 0.x: private; 1.x: visibility
        if not self.hub.storage.create(repo_type, repo_id, private=private, sdk=body.get("sdk")):
            raise _Reply(409, {"error": f"You already created this {repo_type} repo", "url": url},
                         {"X-Error-Message": f"You already created this {repo_type} repo"})
        self._send(200, {"url": url, "name": repo_id, "id": repo_id})

    def _delete_repo(self) -> None:
        self._need_write()
        body = self._json()
        repo_type = body.get("type") or "model"
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else str(body.get("name"))
        self._repo(repo_type, repo_id, write=True)
        self.hub.storage.delete_repo(repo_type, repo_id)
        self._send(200, {})

    def _info(self, repo_type: str, repo_id: str, revision: str, query: dict) -> None:
        settings = self._repo(repo_type, repo_id)
        storage = self.hub.storage
        head = storage.head(repo_type, repo_id)
        if revision != "main" or head is not None:
            commit = self._revision(repo_type, repo_id, revision)
            record = storage.commit_record(repo_type, repo_id, commit)
            files, modified = record.files, record.time
        else:
            commit, files, modified = None, {}, settings.get("created")
        blobs = query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = []
        for path, f in files.items():
            s: dict[str, Any] = {"rfilename": path}
            if blobs:
                s |= {"size": f.size, "blobId": f.oid}
                if f.lfs:
                    s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": len(lfs_pointer(f.sha256, f.size))}
                if not storage.has_object(f.sha256):  # lost from the store: report it gone so a push restores it
                    s |= {"blobId": "0" * 40, "lfs": None}
            siblings.append(s)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(f"{repo_type}:{repo_id}".encode()).hexdigest()[:24], "id": repo_id,
            "author": repo_id.split("/")[0], "sha": commit, "lastModified": modified,
            "createdAt": settings.get("created"), "private": bool(settings.get("private")),
            "gated": settings.get("gated") or False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
            "siblings": siblings, "xetEnabled": False, "usedStorage": sum(f.size for f in files.values())}
        readme = files.get("README.md")
        if readme and (obj := storage.verified_object(readme.sha256)):
            card = _front_matter(obj.read_bytes())
            if isinstance(card, dict):
                info["cardData"] = card
                for key in ("pipeline_tag", "library_name"):
                    if card.get(key):
                        info[key] = card[key]
                info["tags"] = list(card.get("tags") or [])
        if repo_type == "space":
            info |= {"sdk": settings.get("sdk"), "runtime": {"stage": "RUNNING", "hardware": {"current": None}},
                     "subdomain": repo_id.replace("/", "-").lower()}
        self._send(200, info)

    def _tree_entry(self, path: str, f: FileEntry) -> dict[str, Any]:
        if not self.hub.storage.has_object(f.sha256):  # see _info: a lost object shows as a different file
            return {"type": "file", "oid": "0" * 40, "size": f.size, "path": path}
        entry: dict[str, Any] = {"type": "file", "oid": f.oid, "size": f.size, "path": path}
        if f.lfs:
            entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": len(lfs_pointer(f.sha256, f.size))}
        return entry

    def _files_at(self, repo_type: str, repo_id: str, revision: str, download: bool = False) -> tuple[str, dict]:
        self._repo(repo_type, repo_id, download=download)
        commit = self._revision(repo_type, repo_id, revision)
        return commit, self.hub.storage.commit_record(repo_type, repo_id, commit).files

    def _tree(self, repo_type: str, repo_id: str, revision: str, sub: str, query: dict) -> None:
        _, files = self._files_at(repo_type, repo_id, revision)
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        prefix = sub.strip("/") + "/" if sub.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in files):
            raise _error(404, f"Entry not found: {sub}", "EntryNotFound")
        out, folders = [], set()
        for path, f in files.items():
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            parts = rest.split("/")
            for i in range(1, len(parts)):
                folder = prefix + "/".join(parts[:i])
                if (recursive or i == 1) and folder not in folders:
                    folders.add(folder)
                    out.append({"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0,
                                "path": folder})
            if recursive or len(parts) == 1:
                out.append(self._tree_entry(path, f))
        self._send(200, out)

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        raw = self._read_body()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = json.loads(raw or b"{}").get("paths", [])
        else:
            paths = parse_qs(raw.decode()).get("paths", [])
        _, files = self._files_at(repo_type, repo_id, revision)
        out = []
        for p in paths:
            p = p.strip("/")
            if p in files:
                out.append(self._tree_entry(p, files[p]))
            elif any(q.startswith(p + "/") for q in files):
                out.append({"type": "directory", "oid": hashlib.sha1(p.encode()).hexdigest(), "size": 0, "path": p})
        self._send(200, out)

    # -- uploads -------------------------------------------------------------------------------------------------

    def _preupload(self, repo_type: str, repo_id: str, revision: str) -> None:
        self._repo(repo_type, repo_id, write=True)
        body = self._json()
        storage = self.hub.storage
        commit = storage.resolve(repo_type, repo_id, revision)
        files = storage.commit_record(repo_type, repo_id, commit).files if commit else {}
        out = []
        for item in body.get("files", []):
            path = str(item.get("path", ""))
            sample = base64.b64decode(item.get("sample") or "")
            lfs = int(item.get("size") or 0) >= LFS_MIN_SIZE or b"\0" in sample or path.lower().endswith(LFS_SUFFIXES)
            entry: dict[str, Any] = {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
            f = files.get(path)
            if f is not None and storage.has_object(f.sha256):
                entry["oid"] = f.sha256 if f.lfs else f.oid
            out.append(entry)
        self._send(200, {"files": out, "commitOid": commit})

    def _lfs_batch(self, repo_type: str, repo_id: str) -> None:
        self._repo(repo_type, repo_id, write=True)
        body = self._json()
        if body.get("operation") != "upload":
            raise _error(400, "only the upload operation is supported; download through /resolve")
        storage = self.hub.storage
        objects = []
        for obj in body.get("objects", []):
            oid, size = str(obj.get("oid", "")), int(obj.get("size", 0))
            if not SHA256.match(oid):
                objects.append({"oid": oid, "size": size, "error": {"code": 422, "message": "invalid oid"}})
                continue
            entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not storage.verified_object(oid):
                sig = self.hub.sign(f"upload:{oid}")
                entry["actions"] = {"upload": {"href": f"{self.hub.url}/lfs-upload/{oid}?size={size}&sig={sig}"},
                                    "verify": {"href": f"{self.hub.url}/lfs-verify/{oid}?sig={sig}"}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                   {"Content-Type": "application/vnd.git-lfs+json"})

    def _signed(self, what: str, query: dict) -> None:
        if not hmac.compare_digest(query.get("sig", [""])[0], self.hub.sign(what)):
            raise _error(403, "Forbidden: invalid or missing signature")

    def _lfs_upload(self, oid: str, query: dict) -> None:
        if not SHA256.match(oid):
            raise _error(400, "invalid oid")
        self._signed(f"upload:{oid}", query)
        size = int(query.get("size", ["-1"])[0])
        self.hub.storage.put_object(self._body_stream(), expected=oid, size=size if size >= 0 else None)
        self._send(200, b"")

    def _lfs_verify(self, oid: str, query: dict) -> None:
        self._signed(f"upload:{oid}", query)
        self._json()
        if not SHA256.match(oid) or not self.hub.storage.verified_object(oid):
            raise _error(404, f"object {oid} was not uploaded")
        self._send(200, {})

    def _commit(self, repo_type: str, repo_id: str, revision: str) -> None:
        self._repo(repo_type, repo_id, write=True)
        storage = self.hub.storage
        header: dict[str, Any] = {}
        adds: dict[str, FileEntry] = {}
        deletes: list[str] = []
        folders: list[str] = []
        for line in self._read_body().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item.get("key"), item.get("value") or {}
            if key == "header":
                header = value
            elif key == "file":
                path = check_path(str(value.get("path", "")))
                data = base64.b64decode(value.get("content") or "") if value.get("encoding") == "base64" \
                    else str(value.get("content", "")).encode()
                if path == "README.md":
                    _check_card(data)
                sha, size = storage.put_object(data)
                adds[path] = FileEntry(sha, size, git_blob_sha1(data), False)
            elif key == "lfsFile":
                path = check_path(str(value.get("path", "")))
                sha, size = str(value.get("oid", "")), int(value.get("size", 0))
                if not SHA256.match(sha) or not storage.verified_object(sha):
                    raise _error(422, f"Your push was rejected because an LFS pointer pointed to a file that does "
                                      f"not exist. For instance: {path}")
                adds[path] = FileEntry(sha, size, git_blob_sha1(lfs_pointer(sha, size)), True)
            elif key == "deletedFile":
                deletes.append(check_path(str(value.get("path", ""))))
            elif key == "deletedFolder":
                folders.append(check_path(str(value.get("path", "")).rstrip("/")))
            else:
                raise _error(400, f"Unsupported commit operation '{key}'")
        if revision not in ("main",) and storage.head(repo_type, repo_id, revision) is None:
            raise _error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        summary = str(header.get("summary") or "Upload files").strip()
        message = summary + (f"\n\n{header['description']}" if header.get("description") else "")
        commit = storage.commit(repo_type, repo_id, revision, header.get("parentCommit"), message, adds, deletes,
                                folders)
        if self.hub.faults.take("lose_commit_replies"):
            raise _Lost()
        self._send(200, {"success": True, "commitOid": commit,
                         # relative: huggingface_hub parses it against its default endpoint, whatever the server's URL
                         "commitUrl": f"{PREFIX[repo_type]}{repo_id}/commit/{commit}"})

    # -- downloads -----------------------------------------------------------------------------------------------

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        commit, files = self._files_at(repo_type, repo_id, revision, download=True)
        f = files.get(path)
        if f is None:
            raise _error(404, f"Entry not found: {path}", "EntryNotFound")
        obj = self.hub.storage.verified_object(f.sha256)
        if obj is None:
            # not a 5xx: retrying cannot help; the damaged object is quarantined and the next push restores it
            raise _error(404, f"the hub's copy of {path} is damaged or missing: push {repo_id} again "
                              "(or run `zoo fsck`)", "EntryNotFound")
        headers = {"X-Repo-Commit": commit, "ETag": f'"{f.oid}"', "Accept-Ranges": "bytes",
                   "Cache-Control": "no-cache"}
        if f.lfs:
            headers |= {"X-Linked-Size": str(f.size), "X-Linked-Etag": f'"{f.sha256}"',
                        "Location": f"{self.hub.url}/lfs-objects/{f.sha256}?commit={commit}"
                                    f"&sig={self.hub.sign(f.sha256)}"}
            return self._send(302, b"", headers)
        self._send_file(obj, f.size, headers)

    def _lfs_object(self, sha256: str, query: dict) -> None:
        if not SHA256.match(sha256):
            raise _error(404, "object not found")
        self._signed(sha256, query)
        obj = self.hub.storage.verified_object(sha256)
        if obj is None:
            raise _error(404, "object not found")
        size = obj.stat().st_size
        # huggingface_hub 1.x follows a redirect on the same host and reads the file's metadata here
        headers = {"ETag": f'"{sha256}"', "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(size),
                   "Accept-Ranges": "bytes"}
        if re.fullmatch(r"[0-9a-f]{40}", commit := query.get("commit", [""])[0]):
            headers["X-Repo-Commit"] = commit
        self._send_file(obj, size, headers)

    def _send_file(self, path: Path, size: int, headers: dict[str, str]) -> None:
        start, end = 0, size - 1
        status = 200
        rng = self.headers.get("Range")
        if rng and (m := re.match(r"bytes=(\d*)-(\d*)$", rng.strip())) and size:
            if m.group(1):
                start, end = int(m.group(1)), int(m.group(2)) if m.group(2) else size - 1
            else:
                start, end = max(0, size - int(m.group(2))), size - 1
            if start >= size:
                raise _Reply(416, b"", {"Content-Range": f"bytes */{size}"})
            status, end = 206, min(end, size - 1)
            headers = {**headers, "Content-Range": f"bytes {start}-{end}/{size}"}
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(end - start + 1 if size else 0))
        self.end_headers()
        if self.command == "HEAD" or not size:
            return
        with open(path, "rb") as f:
            f.seek(start)
            self.wfile.flush()
            sent, total = 0, end - start + 1
            try:
                while sent < total:
                    n = self.connection.sendfile(f, offset=start + sent, count=min(total - sent, 1 << 24))
                    if n == 0:
                        break
                    sent += n
            except (AttributeError, OSError):
                f.seek(start + sent)
                while sent < total and (chunk := f.read(min(_CHUNK, total - sent))):
                    self.wfile.write(chunk)
                    sent += len(chunk)

    # -- collections ---------------------------------------------------------------------------------------------

    def _collection_json(self, data: dict[str, Any]) -> dict[str, Any]:
        items = [{"_id": hashlib.sha1(f"{i['type']}:{i['id']}".encode()).hexdigest()[:24], "id": i["id"],
                  "type": i["type"], "position": n, "author": i["id"].split("/")[0]}
                 for n, i in enumerate(data["items"])]
        return {"slug": data["slug"], "title": data["title"], "owner": {"name": data["namespace"], "type": "org"},
                "items": items, "lastUpdated": data["updated"], "position": 0, "private": False, "theme": "gray",
                "upvotes": 0, "description": None}

    def _collections(self, rest: str) -> None:
        storage = self.hub.storage
        if not rest and self.command == "POST":
            self._need_write()
            body = self._json()
            data, created = storage.create_collection(str(body.get("namespace", "")), str(body.get("title", "")))
            if not created:
                raise _Reply(409, {"error": "You already have a collection with this title",
                                   "slug": data["slug"]}, {"X-Error-Message": "Collection already exists"})
            return self._send(200, self._collection_json(data))
        if rest.endswith("/items") and self.command == "POST":
            self._need_write()
            body = self._json()
            item = body.get("item") or {}
            data, added = storage.add_collection_item(rest[: -len("/items")], str(item.get("id")),
                                                      str(item.get("type")))
            if not added:
                raise _Reply(409, {"error": "Item already in the collection"}, {"X-Error-Message": "Item exists"})
            return self._send(200, self._collection_json(data))
        if self.command == "GET" and rest:
            return self._send(200, self._collection_json(storage.collection(rest)))
        raise _error(404, f"Sorry, we can't find the page you are looking for: {self.command} {self.path}")


class _LimitedReader(io.RawIOBase):
    def __init__(self, raw, n: int):
        self.raw, self.left = raw, n

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        data = self.raw.read(self.left if size < 0 else min(size, self.left))
        self.left -= len(data)
        return data


class _IterReader(io.RawIOBase):
    def __init__(self, chunks):
        self.chunks, self.buf = chunks, b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buf) < size:
            nxt = next(self.chunks, None)
            if nxt is None:
                break
            self.buf += nxt
        out, self.buf = (self.buf, b"") if size < 0 else (self.buf[:size], self.buf[size:])
        return out


def _front_matter(data: bytes) -> Any:
    text = data.decode("utf-8", "replace")
    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    if end < 0:
        return None
    return yaml.safe_load(text[3:end])


def card_problems(data: bytes) -> list[str]:
    """Why the Hub would refuse this README's metadata; empty when it is fine."""
    try:
        meta = _front_matter(data)
    except yaml.YAMLError as e:
        return [f"YAML metadata could not be parsed: {' '.join(str(e).split())}"]
    if meta is None:
        return []
    if not isinstance(meta, dict):
        return ["YAML metadata must be a mapping"]
    problems = []
    for key in ("tags", "datasets", "metrics", "language", "base_model"):
        if key in meta and not isinstance(meta[key], list | str):
            problems.append(f'"{key}" must be a string or an array of strings')
    if "model-index" in meta and not isinstance(meta["model-index"], list):
        problems.append('"model-index" must be an array')
    if "base_model_relation" in meta and meta["base_model_relation"] not in (
            "adapter", "merge", "quantized", "finetune"):
        problems.append('"base_model_relation" must be one of adapter, merge, quantized, finetune')
    if "library_name" in meta and not isinstance(meta["library_name"], str):
        problems.append('"library_name" must be a string')
    return problems


def _check_card(data: bytes) -> None:
    """Refuse a README whose metadata the Hub would refuse, with every reason (400, as the Hub answers)."""
    problems = card_problems(data)
    if problems:
        raise _Reply(400, {"error": '"README.md" is invalid.\n' + "\n".join(f"- {p}" for p in problems),
                           "errors": [{"message": p} for p in problems]},
                     {"X-Error-Message": "Invalid metadata in README.md"})

