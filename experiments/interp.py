"""`python experiments/interp.py --help`: the launcher jaxirl-interp from a checkout.

Its code, usage and flags are in :mod:`jaxirl.launchers.interp`.
"""

from jaxirl.launchers.interp import console_main

if __name__ == "__main__":
    console_main()
