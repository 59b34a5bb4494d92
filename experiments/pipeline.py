"""The whole study in one command: RLHF, demonstrations, IRL over seeds, evaluation,
RLHF with the learned reward, interpretability, and report.md with plots.

    python experiments/pipeline.py                       # embedded default, runs/pipeline
    python experiments/pipeline.py --preset paper70m     # Pythia-70M + Jigsaw + RoBERTa
    python experiments/pipeline.py --stages irl,evaluate,report   # rerun some stages

A rerun skips finished stages; a killed run resumes from its last checkpoint. The
workdir must be new, empty or a pipeline workdir; ``--overwrite`` removes its stage
folders and report (nothing else) first.
"""

# A thin entry point: the launcher is jaxirl.launchers.pipeline (console script
# jaxirl-pipeline after pip install).
from jaxirl.launchers.pipeline import console_main

if __name__ == "__main__":
    console_main()
