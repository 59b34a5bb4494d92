"""Runs many command lines of one launcher in one process, each as a user's shell would.

    python launcher_cases_main.py MODULE REQUESTS_FD RESULTS_FD

``MODULE`` is a launcher (``jaxirl.launchers.rlhf``). Each line read from the file
descriptor ``REQUESTS_FD`` is a batch: a JSON list of ``{"id", "argv0", "argv", "env"}``;
its cases run in order and one JSON line, id -> returncode, stdout and stderr, goes to
``RESULTS_FD``. The process ends when the requests end (``launchers.LauncherProcess``).

Each case gets the launcher's flags reset to their defaults, its own ``sys.argv`` and
environment, and its stdout and stderr captured (absl's log handler included); then
``console_main()`` runs through ``absl.app.run`` exactly as the console script does, and
its exit code is kept. An exception that escapes is printed with its traceback, as the
interpreter would, and counts as exit code 1. What the process prints outside the cases
(start-up, C-level writes, its exit) goes to its own stdout and stderr
(``LauncherProcess.close`` returns them).

This saves a Python start, the imports and the XLA compilations per case.
"""

import contextlib
import importlib
import io
import json
import os
import sys
import traceback


def run_case(module, case: dict) -> dict:
    from absl import app, flags
    from absl import logging as absl_logging

    saved_env = dict(os.environ)
    os.environ.update(case["env"])
    out, err = io.StringIO(), io.StringIO()
    flags.FLAGS.unparse_flags()
    # absl refuses a second app.run in one process; each case is a fresh command line.
    app._register_and_parse_flags_with_usage.done = False
    sys.argv = [case["argv0"], *case["argv"]]
    handler = absl_logging.get_absl_handler().python_handler
    saved_stream = handler.stream
    handler.stream = err
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                module.console_main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:  # what the interpreter prints for an uncaught exception
                traceback.print_exc()
                code = 1
    finally:
        handler.stream = saved_stream
        os.environ.clear()
        os.environ.update(saved_env)
    return {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def main() -> None:
    module_name, requests_fd, results_fd = sys.argv[1:4]
    module = importlib.import_module(module_name)
    with open(int(requests_fd)) as requests, open(int(results_fd), "w") as results:
        for line in requests:
            results.write(json.dumps({case["id"]: run_case(module, case)
                                      for case in json.loads(line)}) + "\n")
            results.flush()


if __name__ == "__main__":
    main()
