"""What every absl launcher in ``experiments/`` shares: one-line errors and logging.

Kept free of absl flags (flags live in ``experiments/``); this only wraps ``main``.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable

from jaxirl.errors import ConfigError, JaxIRLError


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


THIRD_PARTY_LOGGERS = ("absl", "jax", "orbax", "datasets", "transformers", "huggingface_hub")


def quiet_libraries() -> None:
    """Sets jaxirl's log level from ``--verbosity`` / ``-v`` and quiets third-party loggers.

    Without the flag, jaxirl logs warnings and errors only, so that INFO lines do not
    interleave with the progress bars (absl's own default, INFO, is overridden);
    ``--verbosity 0`` shows jaxirl's INFO lines, ``-v 1`` its DEBUG lines. Third-party
    loggers stay at WARNING whatever the flag says.
    """
    from absl import flags
    from absl import logging as absl_logging

    if "verbosity" not in flags.FLAGS or not flags.FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def start_launcher(argv: list[str], multihost: bool = False) -> None:
    """What every launcher does first: reject stray arguments, quiet logs, join the hosts."""
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    quiet_libraries()
    if multihost:
        import jax

        jax.distributed.initialize()
