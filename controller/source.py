"""Where the desired state comes from: a plain folder, a Git working copy, or a Git URL.

A URL is cloned once into a cache folder and fetched after that; the
revision of a Git source is its commit. ``Source.checkout()`` gives the
folder holding the layout of CONTRACT.md section 1 and its revision.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from controller import metrics
from controller.errors import RetryableError, UsageError

if TYPE_CHECKING:  # GitPython costs 0.15 s to import: only the runs that use Git load it
    import git


# The user information of a URL runs to the authority's last "@" (a password may hold one).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@'\"]*(?:@[^\s/?#@'\"]*)*@")
_SECRET_QUERY = re.compile(r"(?i)([?&;](?:[a-z0-9_.-]*token|password|passwd|secret|key|sig|signature|x-amz-[a-z-]+)=)[^&;#\s'\"]*")


def redact(text: str) -> str:
    """A repository URL (or a message quoting one) fit for logs and status: the user information
    before ``@`` and any token-like query value replaced by ``***``."""
    return _SECRET_QUERY.sub(r"\1***", _USERINFO.sub(r"\1***@", text))


def is_url(repo: str) -> bool:
    """True for what Git fetches (URLs, scp-like addresses, bare repositories)."""
    if "://" in repo or repo.startswith("git@"):
        return True
    path = Path(repo)
    return path.is_dir() and (path / "HEAD").is_file() and (path / "objects").is_dir() and not (path / ".git").exists()


@dataclass
class Checkout:
    """A folder with the desired state and the revision it holds."""

    root: Path
    revision: str


class Source:
    """A source of revisions: ``repo`` is a folder or a Git URL, ``path`` the layout inside it."""

    def __init__(self, repo: str, branch: str = "main", path: str = ".", cache_dir: str | None = None):
        self.repo = repo
        self.branch = branch
        self.path = path
        self.cache_dir = Path(cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "lensops"))
        self._lock = threading.Lock()

    @property
    def remote(self) -> bool:
        return is_url(self.repo)

    def checkout(self, fetch: bool = True) -> Checkout:
        """The current revision: for a URL, fetched and checked out into the cache."""
        if self.remote:
            with self._lock:
                work = self._sync_clone(fetch)
                revision = work.head.commit.hexsha
                root = Path(work.working_tree_dir or ".")
        else:
            root = Path(self.repo)
            if not root.is_dir():
                raise UsageError(f"--repo {self.repo}: no such folder")
            revision = _local_revision(root)
        layout = (root / self.path).resolve()
        if not layout.is_relative_to(root.resolve()):
            raise UsageError(f"LENSOPS_PATH {self.path!r} leaves the repository")
        return Checkout(layout, revision)

    def behind(self, mine: str, applied: str) -> bool:
        """Whether ``applied`` (the commit another replica applied last) is one this source has not
        fetched: its Git host lags, and a pass from ``mine`` would take the environment back. (A
        commit it has fetched is no sign of lag, even an older branch head: that is a force push.)"""
        if not self.remote or not applied or mine == applied or not _is_commit(mine) or not _is_commit(applied):
            return False
        import git

        with self._lock:
            work = self._sync_clone(fetch=False)
            try:
                work.git.cat_file("-e", f"{applied}^{{commit}}")
            except git.GitCommandError:
                return True
            return False

    def export(self, revision: str) -> Checkout:
        """An earlier revision's layout, extracted once into the cache (for a rollback to it)."""
        import git

        if self.remote:
            with self._lock:
                work = self._sync_clone(fetch=False)
        else:
            try:
                work = git.Repo(self.repo, search_parent_directories=True)
            except (git.InvalidGitRepositoryError, git.NoSuchPathError):
                raise UsageError(f"{self.repo} is not a Git repository: earlier revisions cannot be read") from None
        sha = revision.removesuffix("-dirty")
        target = self.cache_dir / "revisions" / hashlib.sha256(f"{self.repo}#{sha}".encode()).hexdigest()[:16]
        if not target.is_dir():
            partial = target.with_suffix(".partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            try:
                archive = work.git.archive(sha, "--format=tar", stdout_as_string=False)
            except git.GitCommandError as exc:
                raise UsageError(redact(f"revision {sha[:12]} is not in {self.repo}: {str(exc.stderr).strip()}")) from None
            try:
                with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                    tar.extractall(partial, filter="data")
            except tarfile.FilterError as exc:  # a committed link out of the tree: never followed, never written
                shutil.rmtree(partial, ignore_errors=True)
                raise UsageError(f"revision {sha[:12]} cannot be read back: {exc.tarinfo.name!r} leads out of the repository") from None
            partial.rename(target)
        prefix = Path(work.working_tree_dir or ".").resolve()
        inside = Path(self.repo).resolve().relative_to(prefix) if not self.remote else Path(".")
        return Checkout((target / inside / self.path).resolve(), sha)

    def _sync_clone(self, fetch: bool) -> git.Repo:
        import git

        digest = hashlib.sha256(f"{self.repo}#{self.branch}".encode()).hexdigest()[:16]
        target = self.cache_dir / "repos" / digest
        try:
            if (target / ".git").is_dir():
                work = git.Repo(target)
                if fetch:
                    work.remotes.origin.fetch(self.branch, prune=True, force=True)
                    work.git.checkout("-B", self.branch, f"origin/{self.branch}", "--force")
                    work.git.clean("-fdx")
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                work = git.Repo.clone_from(self.repo, target, branch=self.branch, depth=None, no_checkout=False)
            metrics.GIT_FETCH.labels("success").inc()
        except git.GitCommandError as exc:
            metrics.GIT_FETCH.labels("failed").inc()
            lines = [line.strip() for line in str(exc.stderr or "").splitlines() if line.strip().strip("'").strip()]
            fatal = [line for line in lines if "fatal:" in line or "error:" in line]
            detail = (fatal or lines or [f"git exited {exc.status}"])[0].removeprefix("stderr:").strip().strip("'")
            raise RetryableError(redact(f"git: cannot fetch {self.repo} branch {self.branch}: {detail}")) from None
        metrics.set_source_revision(work.head.commit.hexsha)
        return work


def _is_commit(revision: str) -> bool:
    return len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)


def _local_revision(root: Path) -> str:
    """The commit of a working copy (with ``-dirty`` when changed), or a digest of the files."""
    resolved = root.resolve()
    if any((folder / ".git").exists() for folder in (resolved, *resolved.parents)):
        import git

        try:
            work = git.Repo(root, search_parent_directories=True)
            sha = work.head.commit.hexsha
            return sha + ("-dirty" if work.is_dirty(untracked_files=True) else "")
        except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
            pass
    digest = hashlib.sha256()
    for file in sorted(root.rglob("*")):
        if file.is_file() and file.suffix in (".yaml", ".yml", ".json", ".template") and ".git" not in file.parts:
            digest.update(str(file.relative_to(root)).encode())
            digest.update(file.read_bytes())
    return "local-" + digest.hexdigest()[:12]
