"""What every absl launcher in ``experiments/`` shares: one-line errors and logging.

Kept free of absl flags (flags live in ``experiments/``); this only wraps ``main``.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable

from jaxirl import parallel
from jaxirl.errors import ConfigError, JaxIRLError
from jaxirl.parallel import DistributedConfig


def one_line_errors(main: Callable[[list[str]], None]) -> Callable[[list[str]], None]:
    """Turns a :class:`JaxIRLError` into ``error: <message>`` on stderr and exit code 2."""

    @functools.wraps(main)
    def wrapped(argv):
        try:
            return main(argv)
        except JaxIRLError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapped


def quiet_libraries() -> None:
    """Silences chatty third-party loggers so that progress bars stay readable."""
    from absl import logging as absl_logging

    # absl's handler would print every INFO line (e.g. prompt truncation counts) between
    # the progress bars; warnings and errors still show.
    absl_logging.set_verbosity(absl_logging.WARNING)
    for name in ("absl", "jax._src.xla_bridge", "orbax", "datasets", "transformers"):
        logging.getLogger(name).setLevel(logging.WARNING)


def start_launcher(argv: list[str], distributed: DistributedConfig | None = None) -> None:
    """What every launcher does first: reject stray arguments, quiet logs, join the hosts.

    With several processes only process 0 keeps its warnings; the others log errors only.
    """
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    quiet_libraries()
    if distributed is not None:
        parallel.initialize(distributed)
        if not parallel.is_main_process():
            from absl import logging as absl_logging

            absl_logging.set_verbosity(absl_logging.ERROR)
            logging.getLogger().setLevel(logging.ERROR)
