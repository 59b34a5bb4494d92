"""Edits of ``XLA_FLAGS`` that keep what the user set.

XLA reads ``XLA_FLAGS`` once, when JAX creates its backends (the first device query or
computation), so a flag added here counts only if that has not happened yet.
"""

from __future__ import annotations

import os


def add_xla_flag(flag: str) -> bool:
    """Appends ``flag`` (``--name=value``) to ``XLA_FLAGS`` unless ``--name`` is already there.

    Returns:
      True when ``XLA_FLAGS`` now holds this very setting, False when it holds the
      user's other value of the same flag (kept as written).
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if flag.split("=")[0] in flags:
        return flag in flags
    os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()
    return True
