"""`python experiments/rlhf.py --help`: the launcher jaxirl-rlhf from a checkout.

Its code, usage and flags are in :mod:`jaxirl.launchers.rlhf`.
"""

from jaxirl.launchers.rlhf import console_main

if __name__ == "__main__":
    console_main()
