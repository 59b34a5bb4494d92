"""Max-margin IRL: recover a reward from RLHF-policy (expert) vs base-model demonstrations.

    # demonstrations from an RLHF run, then 5 head-only reward models:
    python experiments/irl.py --policy_model runs/rlhf/policy --base_model BASE \
        --prompts BASE/prompts.jsonl --workdir runs/irl --seeds 5
    # reuse saved demonstrations (a jaxirl.irl.demos folder):
    python experiments/irl.py --demos runs/irl/demos --backbone BASE --workdir runs/irl2 \
        --loss logistic --num_layers_unfrozen 2 --lr 1e-5
    python experiments/irl.py ... --resume         # continue the last epoch checkpoint

Writes ``--workdir/irl_metrics.json`` (per-epoch, per-seed held-out metrics),
``--workdir/checkpoints`` and ``--workdir/reward_models/seed_<k>``, each usable
as ``experiments/rlhf.py --reward learned:<folder>``, and, as the study's IRL stage
(both run :func:`jaxirl.pipeline.irl_stage.run_irl`), ``test_rewards.npy`` (every seed's
rewards of the held-out texts, for ``experiments/interp.py --irl_rewards``),
``train_rewards.npy`` and ``epoch0.json`` (the untrained models). ``--workdir`` must be new or empty,
or hold a run of the same settings and inputs (finished: nothing to do; unfinished:
``--resume``); ``--overwrite`` replaces a jaxirl run there.
"""

# A thin entry point: the launcher is jaxirl.launchers.irl (console script
# jaxirl-irl after pip install).
from jaxirl.launchers.irl import console_main

if __name__ == "__main__":
    console_main()
