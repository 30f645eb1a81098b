"""rlhf-recipes' core: everything the thin scripts in `recipes/` share, in layers that import only downward.

    compat.py    upstream workarounds only, each naming the upstream issue or removal it works around
    world/       the embedded world: cities and facts in English and Chinese, demonstrators, datasets, the
                 gold labeler
    training/    errors and strict config, launch, loading, models, staged outputs and resume, model cards,
                 chat templates, prompts, generation, rewards, resumable trainers
    evaluation/  judging answers with a labeler, the gold-score and win-rate metrics, pretraining probes,
                 n-grams counted before the network, the report, the sweep's figures, over-optimisation
    stages/      the one stage runner every training script uses, the online RL shared by PPO, RLOO and
                 GRPO, the one function that builds a stage's command
    bench/       `make bench`, `make gpu-check`      serving/   `make chat`, `make serve`

A module imports its own layer and those listed before it, never one listed after it, and nothing
imports a script (tests/test_layers.py reads every import and holds both rules). Generic layers reach the
embedded world only through the paths a recipe names.
"""

from .compat import defer_bitsandbytes

__version__ = "0.4.0"

defer_bitsandbytes()  # ~4 s off every stage's start-up (compat.py says why); before anything imports peft
