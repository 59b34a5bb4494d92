"""RLHF a GPT-NeoX policy with PPO against a toxicity reward.

    python experiments/rlhf.py                                  # embedded default, profanity reward
    python experiments/rlhf.py --preset pythia70m --model EleutherAI/pythia-70m \
        --dataset jaredjoss/jigsaw-long-2000 --reward roberta:s-nlp/roberta_toxicity_classifier
    python experiments/rlhf.py --reward learned:runs/irl/seed0   # a learned reward model
    python experiments/rlhf.py --resume                          # continue the last checkpoint

Every PPO hyperparameter flag defaults to the preset's value. ``--workdir`` must be new or
empty, or hold a run of the same settings and inputs: finished (a rerun does nothing) or
unfinished (continued with ``--resume``). ``--overwrite`` replaces a jaxirl run there.
"""

# A thin entry point: the launcher is jaxirl.launchers.rlhf (console script
# jaxirl-rlhf after pip install).
from jaxirl.launchers.rlhf import console_main

if __name__ == "__main__":
    console_main()
