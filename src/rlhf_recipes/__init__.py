"""rlhf-recipes' core: what the thin stage scripts in `recipes/` share.

    world/       the embedded world: cities and facts, demonstrators, dataset generation, the gold labeler
                 (also as an `evaluate` metric), the pretraining probes
    training/    config parsing and errors, launch, loading, staged outputs and model cards, chat, rewards
    evaluation/  generation, judging answers with a labeler, the win-rate metric, the report's figures
    compat.py    workarounds for TRL 1.12 and DeepSpeed quirks, each naming what it works around

Generic code (training/, evaluation/) never imports world/: a stage reaches the embedded world only
through the paths its recipe names.
"""

__version__ = "0.3.0"
