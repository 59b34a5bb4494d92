"""`python experiments/pretrain_default.py --help`: the launcher jaxirl-pretrain-default from a checkout.

Its code, usage and flags are in :mod:`jaxirl.launchers.pretrain_default`.
"""

from jaxirl.launchers.pretrain_default import console_main

if __name__ == "__main__":
    console_main()
