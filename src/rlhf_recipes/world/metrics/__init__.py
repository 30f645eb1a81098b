"""The embedded world's `evaluate` metric: the gold labeler's score of any answers, loaded by local path (offline).

from rlhf_recipes.world.metrics import load_gold_score

gold = load_gold_score()
gold.compute(predictions=answers, references=questions, world_file="data/world/world.json")
"""

from pathlib import Path


def load_gold_score(**load_kwargs):
    """The gold labeler as an `evaluate.EvaluationModule`; `load_kwargs` go to `evaluate.load`."""
    import evaluate  # imports datasets and pyarrow: only those who load a metric pay for it

    return evaluate.load(str(Path(__file__).resolve().parent / "gold_score"), **load_kwargs)
