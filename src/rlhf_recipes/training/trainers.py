"""TRL's SFT and reward trainers as the stages use them, and the mark of a complete checkpoint.

A checkpoint counts as complete only once `CheckpointCompleted` has marked it (the trainer calls it after
the last file is written), so a run killed while saving leaves a checkpoint the next run removes rather
than loads (training/outputs.py). PPO's trainer is the project's own: training/ppo.
"""

from __future__ import annotations

from pathlib import Path

from transformers import TrainerCallback
from trl import RewardTrainer, SFTTrainer

from ..compat import KeepsTokenCount
from .outputs import CHECKPOINT_DONE, CHECKPOINT_PREFIX, write_json


class CheckpointCompleted(TrainerCallback):
    """Mark a checkpoint complete once the trainer has written all of it (`on_save` runs after the save)."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}-{state.global_step}"
            write_json(folder / CHECKPOINT_DONE, {"global_step": state.global_step})


class ResumableSFTTrainer(KeepsTokenCount, SFTTrainer):
    pass


class ResumableRewardTrainer(KeepsTokenCount, RewardTrainer):
    pass
