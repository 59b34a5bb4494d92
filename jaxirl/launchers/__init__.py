"""The command-line launchers: absl flags -> configs -> the stages of :mod:`jaxirl.pipeline`.

Each module defines its flags at import and a ``main(argv)``; ``console_main()`` is the
console script installed by pip (``jaxirl-rlhf``, ``jaxirl-irl``, ``jaxirl-interp``,
``jaxirl-pipeline``, ``jaxirl-pretrain-default``), and ``experiments/<name>.py`` runs
the same function from a checkout. absl flags are defined here (and in ``experiments/``)
only, never in the library: import a launcher module only to run it.
"""
