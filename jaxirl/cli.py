"""What every absl launcher (:mod:`jaxirl.launchers`) shares: one-line errors and logging.

Flags are defined in :mod:`jaxirl.launchers` (and ``experiments/``) only; this module wraps ``main``, parses the
command line so that a bad flag value is a one-line error too, and turns the
library's names of settings (``IRLTrainConfig.num_seeds``, ``overwrite=True``) into
the launcher's flag names (``--seeds``, ``--overwrite``).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Callable, Mapping

from jaxirl import parallel
from jaxirl.errors import ConfigError, JaxIRLError
from jaxirl.models.remat import memory_aware_cpu_scheduler
from jaxirl.parallel import DistributedConfig

# Library argument -> flag, shared by every launcher.
COMMON_FLAG_NAMES = {"resume=True": "--resume", "overwrite=True": "--overwrite"}


def translate(message: str, flag_names: Mapping[str, str]) -> str:
    """Replaces each library name in ``message`` by its flag (longest names first)."""
    for name in sorted(flag_names, key=len, reverse=True):
        message = re.sub(rf"(?<![\w.\-]){re.escape(name)}(?![\w=])", flag_names[name], message)
    return message


def refuse_resume_with_overwrite(resume: bool, overwrite: bool) -> None:
    """ConfigError when a launcher is asked both to continue and to replace its run."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite cannot be combined: --resume continues "
                          "the unfinished run in --workdir, --overwrite replaces it; pass one")


# Threads that run jaxirl work beside the main one (the study's background lanes, SAE and
# decoding pools) are named with this prefix.
WORKER_THREAD_PREFIX = "jaxirl-"


def _workers_alive() -> bool:
    """A daemon worker (a study's background lane) is still running. Pool threads are not
    daemons: the interpreter joins them before it shuts down, which is safe."""
    return any(t.name.startswith(WORKER_THREAD_PREFIX) and t.daemon and t.is_alive()
               for t in threading.enumerate() if t is not threading.main_thread())


def exit_process(code: int) -> None:
    """Exits with ``code``. While a daemon worker is still inside XLA, at once
    (``os._exit``): an interpreter shutdown under it can abort the process (SIGABRT,
    "terminate called ..."). Every output is written atomically and every stage
    resumes, so nothing is lost."""
    if _workers_alive():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def fail(message: str) -> None:
    """Prints ``error: <message>`` (one line) on stderr and exits with code 2."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    exit_process(2)


def one_line_errors(main: Callable | None = None, *, flag_names: Mapping[str, str] = ()):
    """Decorator: a :class:`JaxIRLError` or ``OSError`` becomes ``error: <message>``, exit 2.

    Args:
      flag_names: library name -> flag name, applied to every message (on top of
        :data:`COMMON_FLAG_NAMES`).
    """
    names = {**COMMON_FLAG_NAMES, **dict(flag_names)}

    def decorate(fn):
        @functools.wraps(fn)
        def wrapped(argv):
            try:
                return fn(argv)
            except JaxIRLError as e:  # names_flag: the message already names the flag typed
                fail(str(e) if getattr(e, "names_flag", False) else translate(str(e), names))
            except OSError as e:  # a file system refusal (permissions, full disk) at the boundary
                where = f" '{e.filename}'" if e.filename else ""
                fail(f"{type(e).__name__}{where}: {e.strerror or e}")
            except KeyboardInterrupt:
                print("interrupted: run the same command again to continue where it stopped",
                      file=sys.stderr)
                exit_process(130)
            except Exception:
                if not _workers_alive():
                    raise
                traceback.print_exc()
                exit_process(1)

        return wrapped

    return decorate(main) if main is not None else decorate


def parse_flags(argv: list[str], prepare: Callable[[list[str]], None] | None = None
                ) -> list[str]:
    """absl's parser, with a bad flag value as ``error: ...`` and exit code 2.

    ``prepare(argv)`` runs first: it may define flags that depend on the command line
    (the launchers' ``--config.<field>`` overrides).
    """
    from absl import flags

    try:
        if prepare is not None:
            prepare(argv)
        return flags.FLAGS(argv)
    except (flags.Error, JaxIRLError) as e:
        fail(str(e))


def run(main: Callable[[list[str]], None],
        prepare: Callable[[list[str]], None] | None = None) -> None:
    """``absl.app.run`` with one-line flag errors (see :func:`parse_flags`)."""
    from absl import app

    app.run(main, flags_parser=functools.partial(parse_flags, prepare=prepare))


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


def enable_compilation_cache() -> str | None:
    """Turns on XLA's persistent compilation cache in ``$JAXIRL_CACHE/xla``.

    A study compiles the same PPO programs for each of its RLHF runs, and a rerun compiles
    everything again; a cache hit loads the identical executable, so results do not
    change. A cache the user chose (``JAX_COMPILATION_CACHE_DIR``) is kept; a cache
    folder that cannot be created leaves caching off (the run itself reports an
    unwritable ``$JAXIRL_CACHE`` where it needs it).

    Returns:
      The cache folder in use, or None.
    """
    import jax

    from jaxirl.runs import cache_root

    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    folder = cache_root() / "xla"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # JAX stores only programs that took >= 1 s to compile. The study's ~250 programs
    # each compile in 0.01-1 s (28 s in all, mostly on the main chain), so by default
    # every run compiled them again; all of them are kept unless the user set a minimum.
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return str(folder)


# Python's cyclic GC defaults (700, 10, 10) ran 1,645 collections in one default PPO run,
# 1.5 s of pauses (1.3 s of them full collections walking every live object: JAX's,
# flax's and transformers' modules and caches); these ran 97 (0.34 s) at the same peak
# memory (BUILD_NOTES.md). A pause holds the GIL, so it stalls the study's background lanes too.
GC_THRESHOLDS = (10_000, 20, 20)


def tune_garbage_collector() -> None:
    """Sets the launchers' GC thresholds (:data:`GC_THRESHOLDS`) and freezes what is
    loaded so far (modules, configs), so full collections no longer walk it; results do
    not change. Keeps thresholds the user's code already changed from the default."""
    import gc

    if gc.get_threshold() == (700, 10, 10):
        gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()


def start_launcher(argv: list[str], distributed: DistributedConfig | None = None,
                   remat: bool = False) -> None:
    """What every launcher does first: reject stray arguments, quiet logs, join the hosts.

    With several processes only process 0 keeps its warnings; the others log errors only.
    ``remat`` (the run recomputes activations) turns on XLA:CPU's memory-aware scheduler,
    without which remat saves no memory on CPU (:mod:`jaxirl.models.remat`); it must
    happen before JAX starts its backends, so it comes first.
    """
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    if remat:
        memory_aware_cpu_scheduler()
    quiet_libraries()
    enable_compilation_cache()
    tune_garbage_collector()
    if distributed is not None:
        parallel.initialize(distributed)
        if not parallel.is_main_process():
            from absl import logging as absl_logging

            absl_logging.set_verbosity(absl_logging.ERROR)
            logging.getLogger().setLevel(logging.ERROR)
