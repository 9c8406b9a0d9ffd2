"""The Hugging Face Hub backend: huggingface_hub's HfApi behind the hub interface, with retries and clear errors.

Every call that fails with HTTP 5xx/429, a timeout or a dropped connection is retried with exponential backoff.
A commit is one ``create_commit`` with ``parent_commit``, atomic on the Hub side; before a retry the head is read
again, so a commit that landed although its answer was lost is recognised instead of being made twice.
The token is passed to HfApi and never printed: error texts are scrubbed of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.hub import ops
from zoo.hub.base import MOVED, Operation, RepoType

RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)  # seconds slept before each retry: five tries in all


def _hub_errors() -> tuple[type[BaseException], ...]:
    """What a Hub call raises for a user or network problem (HTTP errors, offline mode, invalid ids); other
    exceptions are bugs and keep their traceback."""
    import requests

    return requests.exceptions.RequestException, OSError, ValueError


def _status(e: BaseException) -> int | None:
    response = getattr(e, "response", None)
    return getattr(response, "status_code", None)


def retryable(e: BaseException) -> bool:
    """True for failures that may pass on a second try: HTTP 5xx or 429, timeouts, dropped connections."""
    import requests
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(e, OfflineModeIsEnabled):
        return False
    if isinstance(e, HfHubHTTPError):
        status = _status(e)
        return status is not None and (status >= 500 or status == 429)
    return isinstance(e, requests.exceptions.Timeout | requests.exceptions.ConnectionError | TimeoutError
                      | ConnectionError)


class HfHub:
    """The Hugging Face Hub through one HfApi (pass ``api`` to use another object with the same methods)."""

    name = "hf"

    def __init__(self, token: str | None = None, api: Any = None, delays: tuple[float, ...] = RETRY_DELAYS,
                 sleep: Callable[[float], None] = time.sleep):
        from huggingface_hub import HfApi

        self._token = token
        self.api = api if api is not None else HfApi(token=token)
        self.delays = delays
        self.sleep = sleep
        self._collections: dict[tuple[str, str], str] = {}

    @classmethod
    def from_env(cls, require_token: bool) -> HfHub:
        """A hub with the token from ``HF_TOKEN`` or the huggingface_hub login.

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
        from huggingface_hub.errors import OfflineModeIsEnabled

        status = _status(e)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if isinstance(e, OfflineModeIsEnabled):
            text = f"{what} {repo_id}: HF_HUB_OFFLINE is set: unset it to reach huggingface.co, or use `--hub local`"
        elif status == 401:
            text = (f"{what} {repo_id}: huggingface.co refused the token (401): set HF_TOKEN to a valid token "
                    "or run `hf auth login`")
        elif status == 403:
            text = f"{what} {repo_id}: the token may not write to this repo (403): use a token with write access"
        elif status in (409, 412) and what == "commit to":
            text = f"{repo_id}: {MOVED}"
        elif retryable(e):
            text = (f"{what} {repo_id}: failed {tries} times ({first}); nothing was committed: "
                    "run the same command again")
        else:
            text = f"{what} {repo_id}: {first}"
        return ZooError(self._redact(" ".join(text.split())))

    def _call(self, what: str, repo_id: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        tries = len(self.delays) + 1
        for i in range(tries):
            try:
                return fn(*args, **kwargs)
            except _hub_errors() as e:
                if not retryable(e) or i == tries - 1:
                    raise self._error(e, what, repo_id, i + 1) from None
                self.sleep(self.delays[i])
        raise AssertionError("unreachable")

    # -- the hub interface -----------------------------------------------------------------------------------

    def create_repo(self, repo_id: str, repo_type: RepoType = "model") -> None:
        extra = {"space_sdk": "gradio"} if repo_type == "space" else {}
        self._call("create", repo_id, self.api.create_repo, repo_id, repo_type=repo_type, exist_ok=True, **extra)

    def head(self, repo_id: str, repo_type: RepoType = "model") -> str | None:
        return self._call("read", repo_id, self._info, repo_id, repo_type, None)

    def _info(self, repo_id: str, repo_type: RepoType, revision: str | None) -> str | None:
        from huggingface_hub.errors import RepositoryNotFoundError

        try:
            return self.api.repo_info(repo_id, repo_type=repo_type, revision=revision).sha
        except RepositoryNotFoundError:
            if revision is None:
                return None
            raise

    def resolve(self, repo_id: str, repo_type: RepoType = "model", revision: str | None = None) -> str:
        sha = self._call("read", repo_id, self._info, repo_id, repo_type, revision or "main")
        if not sha:
            raise ZooError(f"{repo_id}: no revision '{revision or 'main'}' on huggingface.co")
        return sha

    def files(self, repo_id: str, repo_type: RepoType = "model", revision: str | None = None) -> dict[str, str]:
        from huggingface_hub.errors import RepositoryNotFoundError
        from huggingface_hub.hf_api import RepoFile

        def listing() -> dict[str, str] | None:
            try:
                items = list(self.api.list_repo_tree(repo_id, recursive=True, revision=revision, repo_type=repo_type))
            except RepositoryNotFoundError:
                return None
            return {f.path: (f.lfs.sha256 if f.lfs else f.blob_id) for f in items if isinstance(f, RepoFile)}

        return self._call("read", repo_id, listing) or {}

    def commit(self, repo_id: str, repo_type: RepoType, operations: list[Operation], message: str,
               parent_commit: str | None) -> str:
        tries = len(self.delays) + 1
        for i in range(tries):
            try:
                info = self.api.create_commit(repo_id, operations=operations, commit_message=message,
                                              repo_type=repo_type, parent_commit=parent_commit)
                return info.oid
            except _hub_errors() as e:
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
            head = self.api.repo_info(repo_id, repo_type=repo_type).sha
            if head == parent_commit:
                return None
            remote = self.files(repo_id, repo_type, head)
        except (ZooError, *_hub_errors()):  # only a probe: the next create_commit try reports the real failure
            return None
        return head if ops.holds(remote, operations) else None

    def tag(self, repo_id: str, repo_type: RepoType, tag: str, revision: str) -> bool:
        refs = self._call("read", repo_id, self.api.list_repo_refs, repo_id, repo_type=repo_type)
        if any(t.name == tag for t in refs.tags):
            return False
        self._call("tag", repo_id, self.api.create_tag, repo_id, tag=tag, revision=revision, repo_type=repo_type,
                   exist_ok=True)
        return True

    def snapshot(self, repo_id: str, repo_type: RepoType, revision: str | None, dest: Path) -> Path:
        path = self._call("download", repo_id, self.api.snapshot_download, repo_id, repo_type=repo_type,
                          revision=revision, local_dir=str(dest))
        return Path(path)

    def read_file(self, repo_id: str, repo_type: RepoType, path: str, revision: str | None = None) -> bytes | None:
        from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

        def fetch() -> bytes | None:
            try:
                local = self.api.hf_hub_download(repo_id, path, repo_type=repo_type, revision=revision)
            except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError):
                return None
            return Path(local).read_bytes()

        return self._call("download", repo_id, fetch)

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
