"""`python experiments/irl.py --help`: the launcher jaxirl-irl from a checkout.

Its code, usage and flags are in :mod:`jaxirl.launchers.irl`.
"""

from jaxirl.launchers.irl import console_main

if __name__ == "__main__":
    console_main()
