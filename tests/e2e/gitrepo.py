"""Real git repositories for end-to-end tests (file:// URLs), made with the git CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.e2e.support import ROOT

GO_APP = ROOT / "examples" / "go-app"


class GitRepo:
    def __init__(self, path: Path, branch: str = "master") -> None:
        self.path = path
        self.branch = branch

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def git(self, *args: str) -> str:
        proc = subprocess.run(
            ["git", "-C", str(self.path), *args],
            capture_output=True,
            text=True,
            env={
                "GIT_AUTHOR_NAME": "Dev",
                "GIT_AUTHOR_EMAIL": "dev@example.com",
                "GIT_COMMITTER_NAME": "Dev",
                "GIT_COMMITTER_EMAIL": "dev@example.com",
                "HOME": str(self.path),
                "PATH": "/usr/bin:/bin:/usr/local/bin",
            },
        )
        if proc.returncode != 0:
            raise AssertionError(f"git {' '.join(args)}: {proc.stderr}")
        return proc.stdout.strip()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def commit(self, message: str, files: dict[str, str]) -> str:
        """Writes (appends to) files and commits them; returns the new sha."""
        for name, text in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("a") as f:
                f.write(text)
            self.git("add", name)
        self.git("commit", "-q", "-m", message)
        return self.head()


def go_app_repo(where: Path) -> GitRepo:
    """A repository with the seed's layout (src/, templates/, .gitlab-ci.yml) on `master`."""
    shutil.copytree(GO_APP, where)
    repo = GitRepo(where)
    repo.git("init", "-q", "-b", "master")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "initial import")
    return repo


def new_repo(where: Path, files: dict[str, str], branch: str = "main") -> GitRepo:
    """A repository with one commit of `files` on `branch`."""
    where.mkdir(parents=True, exist_ok=True)
    repo = GitRepo(where, branch)
    repo.git("init", "-q", "-b", branch)
    repo.commit("initial", files)
    return repo
