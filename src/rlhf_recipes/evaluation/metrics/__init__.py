"""Generic `evaluate` metrics, loaded by local path so they work offline.

    win_rate    how often our answers out-score theirs on the same prompts, with a bootstrap 95% interval
    gold_score  the embedded world's gold labeler's score of any answers (pass `world_file`)
`evaluate.load(<folder>)` runs the script named like the folder, so each metric lives in its own folder.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent


def load_metric(name: str, **load_kwargs):
    """`load_metric("win_rate")`: an `evaluate.EvaluationModule`; `load_kwargs` go to `evaluate.load`."""
    import evaluate  # imports datasets and pyarrow: only those who load a metric pay for it

    return evaluate.load(str(HERE / name), **load_kwargs)
