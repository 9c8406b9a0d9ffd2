"""The one hub client: huggingface_hub's HfApi against huggingface.co or the embedded hub, with retries and clear
errors.

Every call that fails with HTTP 5xx/429, a timeout or a dropped or refused connection is retried with exponential
backoff; after the last try the failure is reported as "the hub at URL is unreachable", never as a missing repo or
file. A commit is one ``create_commit`` with ``parent_commit``, atomic on the server; before a retry the head is read
again, so a commit that landed although its answer was lost is recognised instead of being made twice.
The transport errors caught are those of the HTTP library the installed huggingface_hub uses (requests for 0.x,
httpx for 1.x/2.x), found at run time. The token is passed to HfApi and never printed: error texts are scrubbed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.hub import ops
from zoo.hub.base import MOVED, Operation, RepoType

RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)  # seconds slept before each retry: five tries in all
HF_ENDPOINT = "https://huggingface.co"


@cache
def transport_errors() -> tuple[type[BaseException], ...]:
    """The connection/timeout/protocol errors of the HTTP library huggingface_hub uses, imported from that library
    only (``requests`` is not installed alongside huggingface_hub 1.x)."""
    import importlib

    from huggingface_hub.utils import get_session

    lib = type(get_session()).__module__.split(".")[0]
    module = importlib.import_module(lib)
    if lib == "requests":
        exc = module.exceptions
        return exc.ConnectionError, exc.Timeout, exc.ChunkedEncodingError, exc.ContentDecodingError
    return (module.TransportError,)  # httpx / httpx2: connect, read, write, pool and protocol errors


def _hub_errors() -> tuple[type[BaseException], ...]:
    """What a Hub call raises for a user or network problem (HTTP errors, offline mode, invalid ids, a failed LFS
    upload); other exceptions are bugs and keep their traceback."""
    from huggingface_hub.errors import HfHubHTTPError

    return HfHubHTTPError, *transport_errors(), OSError, ValueError, RuntimeError


def _unwrap(e: BaseException) -> BaseException:
    """huggingface_hub wraps some failures (an LFS upload: RuntimeError; a forced download: ValueError) around the
    HTTP or transport error that says what happened."""
    from huggingface_hub.errors import HfHubHTTPError

    while isinstance(e, RuntimeError | ValueError) and not isinstance(e, HfHubHTTPError) and e.__cause__ is not None:
        e = e.__cause__
    return e


def _status(e: BaseException) -> int | None:
    response = getattr(e, "response", None)
    return getattr(response, "status_code", None)


def _offline(e: BaseException) -> bool:
    from huggingface_hub import constants
    from huggingface_hub.errors import OfflineModeIsEnabled

    chain = [e, e.__cause__, e.__context__]
    return any(isinstance(x, OfflineModeIsEnabled) for x in chain) or bool(constants.HF_HUB_OFFLINE)


def retryable(e: BaseException) -> bool:
    """True for failures that may pass on a second try: HTTP 5xx or 429, timeouts, dropped or refused connections,
    and a download that could not reach the hub (LocalEntryNotFoundError outside offline mode)."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    e = _unwrap(e)
    if _offline(e):
        return False
    if isinstance(e, LocalEntryNotFoundError):
        return True
    status = _status(e)  # HfHubHTTPError, or the HTTP library's own status error that huggingface_hub re-raised
    if isinstance(e, HfHubHTTPError) or status is not None:
        return status is not None and (status >= 500 or status == 429)
    return isinstance(e, transport_errors() + (TimeoutError, ConnectionError))


@dataclass
class RepoState:
    """What one repo_info call tells a push: the head commit, every file's digest, and the gate setting."""

    head: str | None
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256 (LFS) or git blob sha1
    gated: bool = False


class HfHub:
    """A Hub server (huggingface.co or the embedded hub) through one HfApi.

    Args:
        token: the write token (None: anonymous reads).
        endpoint: the server's URL.
        name: "hf" or "local" (the embedded hub: no Xet, HF_HUB_OFFLINE does not apply), as on the command line.
        cache_dir: where single-file reads are cached (per endpoint, so two servers never share entries).
    """

    def __init__(self, token: str | None = None, endpoint: str = HF_ENDPOINT, name: str = "hf",
                 cache_dir: Path | None = None, delays: tuple[float, ...] = RETRY_DELAYS,
                 sleep: Callable[[float], None] = time.sleep):
        from huggingface_hub import HfApi

        self._token = token
        self.endpoint = endpoint.rstrip("/")
        self.name = name
        self.api = HfApi(endpoint=self.endpoint, token=token if token else False)
        self.cache_dir = cache_dir
        self.delays = delays
        self.sleep = sleep
        self._collections: dict[tuple[str, str], str] = {}

    @property
    def token(self) -> str | None:
        """The token this client sends (for a child process of the same command, such as the demo app)."""
        return self._token

    @classmethod
    def from_env(cls, require_token: bool) -> HfHub:
        """huggingface.co with the token from ``HF_TOKEN`` or the huggingface_hub login.

        Raises:
            ZooError: ``require_token`` and there is no token.
        """
        from huggingface_hub import get_token

        token = get_token()
        if require_token and not token:
            raise ZooError("no Hugging Face token: set HF_TOKEN or run `hf auth login` "
                           "(or try `--dry-run`, or `--hub local`)")
        return cls(token=token)

    # -- plumbing --------------------------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _error(self, e: BaseException, what: str, repo_id: str, tries: int) -> ZooError:
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        e = _unwrap(e)
        status = _status(e)
        lines = [x.strip() for x in str(e).strip().splitlines() if x.strip()] or [type(e).__name__]
        first = lines[0]
        committing = what == "commit to"
        if _offline(e) and not isinstance(e, HfHubHTTPError):
            text = (f"{what} {repo_id}: HF_HUB_OFFLINE is set: unset it to reach {self.endpoint}, "
                    "or use `--hub local`")
        elif status == 401 and self.name == "hf":
            text = (f"{what} {repo_id}: huggingface.co refused the token (401): set HF_TOKEN to a valid token "
                    "or run `hf auth login`")
        elif status == 401:
            text = (f"{what} {repo_id}: the hub at {self.endpoint} refused the token (401): set ZOO_HUB_TOKEN to "
                    "the token in its root folder's `token` file")
        elif status == 403:
            text = f"{what} {repo_id}: the token may not write to this repo (403): use a token with write access"
        elif status in (409, 412) and committing:
            text = f"{repo_id}: {MOVED}"
        elif retryable(e):
            why = f"HTTP {status}" if status else type(e.__cause__ or e).__name__ if isinstance(
                e, LocalEntryNotFoundError) else type(e).__name__
            text = (f"{what} {repo_id}: the hub at {self.endpoint} is unreachable ({why}"
                    + (f"; {tries} tries)" if tries > 1 else ")")
                    + ("; nothing was committed" if committing else "") + ": run the same command again")
        elif status in (400, 422) or isinstance(e, ValueError):
            server = getattr(e, "server_message", None) or "; ".join(lines)
            text = f"{what} {repo_id}: the hub refused it ({status or 'invalid'}): " + "; ".join(
                x.strip() for x in server.splitlines() if x.strip())
        else:
            text = f"{what} {repo_id}: {getattr(e, 'server_message', None) or first}"
        return ZooError(self._redact(" ".join(text.split())))

    def _call(self, what: str, repo_id: str, fn: Callable[..., Any], *args: Any, _download: bool = False,
              **kwargs: Any) -> Any:
        # huggingface_hub 0.x retries file downloads itself (5 tries with backoff); 1.x leaves it to the caller
        tries = 1 if _download and "requests" in {e.__module__.split(".")[0] for e in transport_errors()} \
            else len(self.delays) + 1
        for i in range(tries):
            try:
                with self._session():
                    return fn(*args, **kwargs)
            except _hub_errors() as e:
                if isinstance(e, RuntimeError) and e.__cause__ is None:
                    raise
                if not retryable(e) or i == tries - 1:
                    raise self._error(e, what, repo_id, i + 1) from None
                self.sleep(self.delays[i])
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        """Settings of huggingface_hub for one call to the embedded hub: uploads through LFS (huggingface_hub 1.x
        uses Xet whenever hf_xet is installed, whatever the server), and HF_HUB_OFFLINE does not apply (the
        embedded hub on 127.0.0.1 is how the zoo works without a network). huggingface.co calls are left as they
        are."""
        if self.name != "local":
            yield
            return
        from huggingface_hub import constants

        try:  # huggingface_hub 0.x fixes offline mode into its cached sessions; 1.x checks it on every request
            from huggingface_hub.utils import reset_sessions
        except ImportError:
            def reset_sessions() -> None:
                pass

        saved = constants.HF_HUB_DISABLE_XET, constants.HF_HUB_OFFLINE
        constants.HF_HUB_DISABLE_XET = True
        if saved[1]:
            constants.HF_HUB_OFFLINE = False
            reset_sessions()
        try:
            yield
        finally:
            constants.HF_HUB_DISABLE_XET, constants.HF_HUB_OFFLINE = saved
            if saved[1]:
                reset_sessions()

    # -- the hub interface -----------------------------------------------------------------------------------

    def create_repo(self, repo_id: str, repo_type: RepoType = "model") -> None:
        extra = {"space_sdk": "gradio"} if repo_type == "space" else {}
        self._call("create", repo_id, self.api.create_repo, repo_id, repo_type=repo_type, exist_ok=True, **extra)

    def state(self, repo_id: str, repo_type: RepoType = "model") -> RepoState | None:
        """The repo's head, files and gate in one request; None if the repo does not exist."""
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        def info() -> RepoState | None:
            try:
                r = self.api.repo_info(repo_id, repo_type=repo_type, files_metadata=True)
            except RepositoryNotFoundError:
                return None
            except RevisionNotFoundError:  # a repo without any commit
                return RepoState(None)
            files = {s.rfilename: (s.lfs.sha256 if s.lfs else s.blob_id) for s in (r.siblings or [])}
            return RepoState(r.sha, files if r.sha else {}, bool(getattr(r, "gated", False)))

        return self._call("read", repo_id, info)

    def head(self, repo_id: str, repo_type: RepoType = "model") -> str | None:
        state = self.state(repo_id, repo_type)
        return state.head if state else None

    def resolve(self, repo_id: str, repo_type: RepoType = "model", revision: str | None = None) -> str:
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        def info() -> str | None:
            try:
                return self.api.repo_info(repo_id, repo_type=repo_type, revision=revision or "main").sha
            except RepositoryNotFoundError:
                raise ZooError(f"{repo_id}: no such {repo_type} repo on the hub at {self.endpoint}: push it "
                               "first") from None
            except RevisionNotFoundError:
                return None

        sha = self._call("read", repo_id, info)
        if not sha:
            if revision is None:
                raise ZooError(f"{repo_id}: the repo has no commit yet: push it first")
            refs = self._call("read", repo_id, self.api.list_repo_refs, repo_id, repo_type=repo_type)
            tags = ", ".join(t.name for t in refs.tags) or "none"
            raise ZooError(f"{repo_id}: no branch, tag or commit '{revision}' on the hub at {self.endpoint} "
                           f"(tags: {tags})")
        return sha

    def files(self, repo_id: str, repo_type: RepoType = "model", revision: str | None = None) -> dict[str, str]:
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
        from huggingface_hub.hf_api import RepoFile

        def listing() -> dict[str, str] | None:
            try:
                items = list(self.api.list_repo_tree(repo_id, recursive=True, revision=revision, repo_type=repo_type))
            except (RepositoryNotFoundError, RevisionNotFoundError):
                return None
            return {f.path: (f.lfs.sha256 if f.lfs else f.blob_id) for f in items if isinstance(f, RepoFile)}

        return self._call("read", repo_id, listing) or {}

    def commit(self, repo_id: str, repo_type: RepoType, operations: list[Operation], message: str,
               parent_commit: str | None) -> str:
        tries = len(self.delays) + 1
        for i in range(tries):
            try:
                with self._session():
                    info = self.api.create_commit(repo_id, operations=operations, commit_message=message,
                                                  repo_type=repo_type, parent_commit=parent_commit)
                return info.oid
            except _hub_errors() as e:
                if isinstance(e, RuntimeError) and e.__cause__ is None:
                    raise
                if not retryable(e) or i == tries - 1:
                    raise self._error(e, "commit to", repo_id, i + 1) from None
                self.sleep(self.delays[i])
                landed = self._landed(repo_id, repo_type, operations, parent_commit)
                if landed:
                    return landed
        raise AssertionError("unreachable")

    def _landed(self, repo_id: str, repo_type: RepoType, operations: list[Operation],
                parent_commit: str | None) -> str | None:
        """The head, if a commit whose answer was lost did land: main moved past the parent and holds our files."""
        try:
            with self._session():
                state = self.api.repo_info(repo_id, repo_type=repo_type, files_metadata=True)
        except _hub_errors():  # only a probe: the next create_commit try reports the real failure
            return None
        if state.sha in (None, parent_commit):
            return None
        remote = {s.rfilename: (s.lfs.sha256 if s.lfs else s.blob_id) for s in (state.siblings or [])}
        return state.sha if ops.holds(remote, operations) else None

    def tag(self, repo_id: str, repo_type: RepoType, tag: str, revision: str) -> bool:
        refs = self._call("read", repo_id, self.api.list_repo_refs, repo_id, repo_type=repo_type)
        if any(t.name == tag for t in refs.tags):
            return False
        self._call("tag", repo_id, self.api.create_tag, repo_id, tag=tag, revision=revision, repo_type=repo_type,
                   exist_ok=True)
        return True

    def snapshot(self, repo_id: str, repo_type: RepoType, revision: str | None, dest: Path) -> Path:
        """Download the repo at ``revision`` into a temp folder beside ``dest``, check every file against the hub's
        digests, then put it in place of ``dest`` (files the revision lacks are gone; nothing of huggingface_hub's
        ``.cache`` is kept). On any failure ``dest`` is left as it was.

        Raises:
            ZooError: the hub is unreachable, a file does not match its digest, or ``dest`` holds other files.
        """
        dest = Path(dest).resolve()
        if dest.is_dir() and any(dest.iterdir()) and not (dest / "README.md").is_file():
            raise ZooError(f"{dest} holds files that are not a pulled repo: pull into an empty or new folder "
                           "(--dest)")
        commit = self.resolve(repo_id, repo_type, revision)
        expected = self.files(repo_id, repo_type, commit)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".tmp-pull-{dest.name}-{secrets.token_hex(4)}"
        try:
            self._call("download", repo_id, self._download_all, repo_id, repo_type, commit, tmp, _download=True)
            shutil.rmtree(tmp / ".cache", ignore_errors=True)
            got = ops.local_files(tmp)
            for rel in sorted(set(expected) | set(got)):
                if rel not in got or rel not in expected or not ops.file_digest(got[rel]).matches(expected[rel]):
                    raise ZooError(f"{repo_id}@{commit[:12]}: the downloaded {rel} does not match the hub's "
                                   f"digest; {dest} was left as it was: pull again (or run `zoo fsck` on the hub)")
            old = dest.parent / f".tmp-old-{dest.name}-{secrets.token_hex(4)}"
            if dest.exists():
                os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest

    def _download_all(self, repo_id: str, repo_type: RepoType, commit: str, tmp: Path) -> None:
        shutil.rmtree(tmp, ignore_errors=True)  # a fresh folder on every try: never a stale partial download
        self.api.snapshot_download(repo_id, repo_type=repo_type, revision=commit, local_dir=str(tmp))

    def read_file(self, repo_id: str, repo_type: RepoType, path: str, revision: str | None = None) -> bytes | None:
        from huggingface_hub.errors import (
            EntryNotFoundError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        def fetch() -> bytes | None:
            try:
                # force_download: a cached copy is never returned in place of an answer from the hub
                local = self.api.hf_hub_download(repo_id, path, repo_type=repo_type, revision=revision,
                                                 cache_dir=self.cache_dir, force_download=True)
            except (OSError, ValueError) as e:
                cause = _unwrap(e)
                if isinstance(cause, LocalEntryNotFoundError):
                    raise  # the hub could not be reached: an outage, never "file absent"
                if isinstance(cause, EntryNotFoundError | RepositoryNotFoundError | RevisionNotFoundError):
                    return None
                raise
            return Path(local).read_bytes()

        return self._call("download", repo_id, fetch, _download=True)

    def add_to_collection(self, namespace: str, title: str, repo_id: str, repo_type: RepoType) -> None:
        key = (namespace, title)
        if key not in self._collections:
            made = self._call("collection for", repo_id, self.api.create_collection, title, namespace=namespace,
                              exists_ok=True)
            self._collections[key] = made.slug
        self._call("collection for", repo_id, self.api.add_collection_item, self._collections[key],
                   item_id=repo_id, item_type=repo_type, exists_ok=True)

    def set_gated(self, repo_id: str, repo_type: RepoType = "model") -> None:
        self._call("gate", repo_id, self.api.update_repo_settings, repo_id, gated="auto", repo_type=repo_type)
