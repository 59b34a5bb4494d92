"""A minimal absl launcher: logs one line per level from jaxirl and from transformers."""

import logging

from absl import app

from jaxirl.cli import start_launcher


def main(argv):
    start_launcher(argv)
    for level in ("debug", "info", "warning"):
        getattr(logging.getLogger("jaxirl.demo"), level)(f"jaxirl {level}")
        getattr(logging.getLogger("transformers.demo"), level)(f"transformers {level}")


if __name__ == "__main__":
    app.run(main)
