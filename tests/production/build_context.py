"""The image's build context: the files `docker build .` sends, after .dockerignore (docker-py's rules)."""
from __future__ import annotations

import shutil
from pathlib import Path

from docker.utils.build import exclude_paths

from .compose_file import REPOSITORY_ROOT

# Sent to the builder whatever .dockerignore says, but `COPY . .` leaves them out when it lists them.
NOT_COPIED = {"Dockerfile", ".dockerignore"}


def dockerignore_patterns(root: Path = REPOSITORY_ROOT) -> list[str]:
    path = root / ".dockerignore"
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def build_context_files(root: Path = REPOSITORY_ROOT) -> set[str]:
    """Relative paths of every file and folder the context holds."""
    return set(exclude_paths(str(root), dockerignore_patterns(root)))


def copy_build_context(destination: Path, root: Path = REPOSITORY_ROOT) -> Path:
    """What `COPY . .` puts in the image's /app: the context's files, nothing else."""
    destination.mkdir(parents=True, exist_ok=True)
    for relative in sorted(build_context_files(root) - NOT_COPIED):
        source = root / relative
        if source.is_file() and not source.is_symlink():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination
