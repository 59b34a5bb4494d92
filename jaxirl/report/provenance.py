"""What a report needs to be reproduced: code commit, package versions, readable paths."""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import platform
import subprocess

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "scipy",
            "scikit-learn", "transformers", "matplotlib")


def git_commit(path: str | os.PathLike | None = None) -> str:
    """Short commit of the git checkout holding ``path`` (default: this package), with
    "+uncommitted" when tracked files differ from it; "unknown" outside a checkout."""
    where = pathlib.Path(path or pathlib.Path(__file__).resolve().parents[2])

    def git(*args):
        return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True,
                              timeout=20)

    try:
        head = git("rev-parse", "--short=10", "HEAD")
        if head.returncode:
            return "unknown"
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("+uncommitted" if dirty else "")


def package_versions(packages=PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` (and Python); missing ones are left out."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def readable_path(path: str | os.PathLike, workdir: str | os.PathLike) -> str:
    """``path`` relative to ``workdir`` when inside it, ``$JAXIRL_CACHE/...`` when in the
    jaxirl cache, ``~/...`` under the home folder; anything else (a hub id) as given."""
    from jaxirl.default.build import cache_root

    text = str(path)
    p = pathlib.Path(text)
    if not p.is_absolute():
        return text
    for root, name in ((pathlib.Path(workdir).resolve(), None),
                       (cache_root().resolve(), "$JAXIRL_CACHE"),
                       (pathlib.Path.home().resolve(), "~")):
        try:
            rel = p.resolve().relative_to(root)
        except ValueError:
            continue
        return str(rel) if name is None else f"{name}/{rel}"
    return text


__all__ = ["PACKAGES", "git_commit", "package_versions", "readable_path"]
