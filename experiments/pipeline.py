"""`python experiments/pipeline.py --help`: the launcher jaxirl-pipeline from a checkout.

Its code, usage and flags are in :mod:`jaxirl.launchers.pipeline`.
"""

from jaxirl.launchers.pipeline import console_main

if __name__ == "__main__":
    console_main()
