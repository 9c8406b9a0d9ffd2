"""The hub interface ``zoo push``/``zoo pull`` use; ``hf.HfHub`` implements it for huggingface.co and the embedded hub
(``zoo hub serve``) alike."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

from huggingface_hub import CommitOperationAdd, CommitOperationDelete

RepoType = Literal["model", "space"]
Operation = CommitOperationAdd | CommitOperationDelete
MOVED = "the repo moved since you read it: pull and push again"


class Hub(Protocol):
    name: str  # "local" or "hf", as on the command line
    endpoint: str  # the server's URL

    def state(self, repo_id: str, repo_type: RepoType = "model"):
        """The repo's head commit, files ({path: digest}) and gate in one request; None if it does not exist."""

    def create_repo(self, repo_id: str, repo_type: RepoType = "model") -> None:
        """Create the repo if it does not exist (a Space is created with the Gradio SDK)."""

    def head(self, repo_id: str, repo_type: RepoType = "model") -> str | None:
        """The commit id ``main`` points at; None for a repo that does not exist or has no commit."""

    def resolve(self, repo_id: str, repo_type: RepoType = "model", revision: str | None = None) -> str:
        """The commit id of a branch, tag, commit id or (embedded hub) unique commit-id prefix.

        Raises:
            ZooError: the repo or the revision does not exist.
        """

    def files(self, repo_id: str, repo_type: RepoType = "model", revision: str | None = None) -> dict[str, str]:
        """Every file of the repo at ``revision`` (default: head) as {path: sha256 or git blob sha1}; {} if none."""

    def commit(self, repo_id: str, repo_type: RepoType, operations: list[Operation], message: str,
               parent_commit: str | None) -> str:
        """Apply ``operations`` as one commit on ``main``, only if ``main`` still points at ``parent_commit``.

        Returns:
            The new commit id.

        Raises:
            ZooError: ``main`` moved (``MOVED``), or the hub failed after retries; nothing was committed.
        """

    def tag(self, repo_id: str, repo_type: RepoType, tag: str, revision: str) -> bool:
        """Tag a commit; a tag that already exists is left as it is. Returns True if the tag was created."""

    def snapshot(self, repo_id: str, repo_type: RepoType, revision: str | None, dest: Path) -> Path:
        """Write the repo's files at ``revision`` into ``dest`` (created if needed) and return it."""

    def read_file(self, repo_id: str, repo_type: RepoType, path: str, revision: str | None = None) -> bytes | None:
        """One file's content at ``revision``; None if the repo, revision or file does not exist."""

    def add_to_collection(self, namespace: str, title: str, repo_id: str, repo_type: RepoType) -> None:
        """Put a repo in the collection ``title`` of ``namespace`` (created if needed); idempotent."""

    def set_gated(self, repo_id: str, repo_type: RepoType = "model") -> None:
        """Make users accept the conditions before they can download the repo (gated="auto")."""
