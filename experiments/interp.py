"""Interpretability of an RLHF policy: SAEs, the Implicit Reward Model, feature labels.

    # texts from the demonstrations stage (train/test splits kept as they are):
    python experiments/interp.py --base_model BASE --tuned_model runs/rlhf/policy \
        --demos runs/irl/demos --irl_rewards runs/irl/test_rewards.npy --out_dir runs/interp
    # any text file (json/jsonl/csv/parquet, a saved dataset folder or a hub id):
    python experiments/interp.py --base_model BASE --tuned_model runs/rlhf/policy \
        --texts texts.jsonl --text_column text --test_fraction 0.2 --dict_multiples 1,2,8

Writes into ``--out_dir``: ``interp_results.json``, ``interp_tables.md`` (the IRM against
the raw-activation baseline, SAE quality, feature labels, the firing-rate test, IRM vs
IRL), ``irm_scatter.png``, ``sae_metrics.png``, ``firing_rates.png`` and one
sae-lens folder ``sae_layer<L>_x<M>/`` per trained SAE. Every ``InterpConfig`` / ``SAEConfig``
field is a flag; unset flags keep the library defaults. ``--out_dir`` must be new or empty,
or hold a run of the same settings and inputs (finished: nothing to do; unfinished: run
again); ``--overwrite`` replaces a jaxirl run there.
"""

# A thin entry point: the launcher is jaxirl.launchers.interp (console script
# jaxirl-interp after pip install).
from jaxirl.launchers.interp import console_main

if __name__ == "__main__":
    console_main()
