"""Earlier releases of orderly, taken from git history, for the rolling-deploy test.

A *rollout* is what a rolling deploy of the commit that added one or more
migrations looks like: ``orderly migrate upgrade`` takes the schema to the
newest migration in that commit, while processes of the commit before it (the
previous release) still serve. Files are followed across renames, so a
migration that was renumbered counts from the commit that first added it.

Everything here needs the full history: a shallow clone, a missing ``git`` or
a checkout without ``.git`` raises :class:`HistoryUnavailable` with one line
saying what to do.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from alembic.script import ScriptDirectory

from orderly import migrate

ROOT = Path(__file__).resolve().parents[2]


class HistoryUnavailable(Exception):
    """The git history needed to rebuild earlier releases is not there."""


@dataclass(frozen=True)
class Rollout:
    """The migrations one commit added, the release that ran before them, the schema after."""

    revisions: tuple[str, ...]  # oldest first
    added_in: str | None  # the commit that added their files (None: not committed yet)
    previous: str | None  # the release beside them during the deploy (None: there was none)
    target: str  # the revision `migrate upgrade` leaves at that commit

    @property
    def name(self) -> str:
        """``0006+0007 on e65956b``: the migrations, and the release that must survive them."""
        where = self.previous[:7] if self.previous else "nothing"
        return f"{'+'.join(self.revisions)} on {where}"


def git(*args: str, root: Path = ROOT) -> str:
    """Run git in *root* and return its stdout; any failure is :class:`HistoryUnavailable`."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, check=False, timeout=60
        )
    except FileNotFoundError:
        raise HistoryUnavailable(
            "git is not installed: the rolling-deploy test rebuilds earlier releases from "
            "git history (install git and run from a full clone)"
        ) from None
    if done.returncode != 0:
        error = done.stderr.decode(errors="replace").strip().splitlines()
        raise HistoryUnavailable(
            f"`git {' '.join(args)}` failed in {root}: {error[-1] if error else done.returncode} "
            "(the rolling-deploy test needs a full git clone of orderly)"
        )
    return done.stdout.decode(errors="replace")


def require_full_history(root: Path = ROOT) -> None:
    """Raise :class:`HistoryUnavailable` unless *root* is a git checkout with all its history."""
    shallow = git("rev-parse", "--is-shallow-repository", root=root).strip()
    if shallow == "true":
        raise HistoryUnavailable(
            "this clone is shallow: the rolling-deploy test runs earlier releases from git "
            "history; run `git fetch --unshallow` (CI must clone with fetch-depth 0)"
        )
    if shallow != "false":  # a git too old to answer (< 2.15)
        raise HistoryUnavailable(f"cannot tell whether {root} is a shallow clone (git too old?)")


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(migrate.alembic_config("postgresql://unused/unused"))


def head_revision() -> str:
    """Today's newest migration."""
    head = _scripts().get_current_head()
    assert head is not None
    return head


def _migration_files(root: Path) -> list[tuple[str, str]]:
    """(revision, path relative to *root*) for every migration, oldest first."""
    script = _scripts()
    found = []
    for revision in script.walk_revisions():
        assert revision.path is not None
        try:
            path = Path(revision.path).resolve().relative_to(root.resolve())
        except ValueError:
            raise HistoryUnavailable(
                f"orderly's migrations are loaded from {revision.path}, outside the checkout "
                f"{root}: install it editable (`pip install -e .`)"
            ) from None
        found.append((revision.revision, path.as_posix()))
    return found[::-1]


def _added_in(root: Path, path: str) -> str | None:
    """The commit that first added *path*, following renames (None while uncommitted)."""
    commits = git("log", "--follow", "--diff-filter=A", "--format=%H", "--", path, root=root)
    lines = commits.split()
    return lines[-1] if lines else None


def _parent(root: Path, commit: str) -> str | None:
    parents = git("log", "-1", "--format=%P", commit, root=root).split()
    return parents[0] if parents else None


def _is_ancestor(root: Path, ancestor: str, commit: str) -> bool:
    """Whether *ancestor* is *commit* or one of its ancestors."""
    try:
        subprocess.run(
            ["git", "-C", str(root), "merge-base", "--is-ancestor", ancestor, commit],
            capture_output=True,
            check=True,
            timeout=60,
        )
    except subprocess.CalledProcessError as exc:
        if exc.returncode == 1:
            return False
        raise HistoryUnavailable(
            f"`git merge-base` failed: {exc.stderr.decode().strip()}"
        ) from None
    return True


def rollouts(root: Path = ROOT) -> list[Rollout]:
    """Every rollout of orderly's history, oldest first (commits that added migrations)."""
    require_full_history(root)
    migrations = _migration_files(root)
    added = {revision: _added_in(root, path) for revision, path in migrations}
    order = [revision for revision, _ in migrations]
    head = order[-1]
    result: list[Rollout] = []
    for commit in dict.fromkeys(added.values()):
        revisions = tuple(r for r in order if added[r] == commit)
        if commit is None:  # migrations not committed yet: HEAD is the release beside them
            result.append(
                Rollout(revisions, None, git("rev-parse", "HEAD", root=root).strip(), head)
            )
            continue
        # The newest migration that commit shipped (migrations added by its ancestors).
        shipped = [
            r for r in order if added[r] is not None and _is_ancestor(root, added[r], commit)
        ]
        result.append(Rollout(revisions, commit, _parent(root, commit), shipped[-1]))
    return result


def export_source(commit: str, destination: Path, root: Path = ROOT) -> Path:
    """Write *commit*'s ``src/`` into *destination* (``git archive``); return the ``src`` path."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", "--format=tar", commit, "src"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except subprocess.CalledProcessError as exc:
        raise HistoryUnavailable(
            f"`git archive {commit} src` failed: {exc.stderr.decode().strip()}"
        ) from None
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(destination, filter="data")
    return destination / "src"


def revisions_of(items: Sequence[Rollout]) -> set[str]:
    """Every migration the given rollouts add."""
    return {revision for item in items for revision in item.revisions}
