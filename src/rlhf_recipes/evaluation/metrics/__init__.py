"""Generic `evaluate` metrics, loaded by local path so they work offline.

    win_rate    how often our answers out-score theirs on the same prompts, with a bootstrap 95% interval

The embedded world's gold labeler is a metric of its own: `rlhf_recipes.world.metrics.load_gold_score()`.
`evaluate.load(<folder>)` runs the script named like the folder, so each metric lives in its own folder.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent


def load_metric(name: str, **load_kwargs):
    """`load_metric("win_rate")`: an `evaluate.EvaluationModule`; `load_kwargs` go to `evaluate.load`."""
    import evaluate  # imports datasets and pyarrow: only those who load a metric pay for it

    return evaluate.load(str(HERE / name), **load_kwargs)
