"""TRL's SFT and reward trainers as the stages use them, the mark of a complete checkpoint, the policy
snapshots the report's curves evaluate, and the callback that moves a stage's threads to its share of the
cores as jobs start and end beside it (training/cores.py).

A checkpoint counts as complete only once `CheckpointCompleted` has marked it (the trainer calls it after
the last file is written), so a run killed while saving leaves a checkpoint the next run removes rather
than loads (training/outputs.py). PPO's trainer is the project's own: training/ppo.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback
from trl import RewardTrainer, SFTTrainer

from ..compat import KeepsTokenCount
from . import cores
from .outputs import CHECKPOINT_DONE, CHECKPOINT_PREFIX, SNAPSHOTS, write_json


@dataclass
class SnapshotArguments:
    """Every policy-training stage after SFT (PPO, RLOO, GRPO, DPO) can save its policy along the run."""

    snapshot_steps: int = field(
        default=0,
        metadata={
            "help": "Save the policy alone every this many updates to output_dir/snapshots/update-<n> (the "
            "report's over-optimisation and frontier curves evaluate them); 0: none."
        },
    )


class PolicySnapshots(TrainerCallback):
    """The policy alone, as a plain model folder, every `every` optimizer updates: the report measures gold
    score and KL along training from them. Called on every process (a sharded model saves collectively)."""

    def __init__(self, trainer, every: int) -> None:
        self.trainer, self.every = trainer, every

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self.trainer.save_model(str(Path(args.output_dir) / SNAPSHOTS / f"update-{state.global_step:04d}"))


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


class ShareCores(TrainerCallback):
    """Looks at the jobs signed in every few seconds of training (`cores.RECHECK_S`) and moves this process's
    threads to its share."""

    def __init__(self) -> None:
        self.checked = time.monotonic()
        self.threads_used: set[int] = {torch.get_num_threads()}

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() - self.checked >= cores.RECHECK_S and cores.signed_in():
            self.threads_used.add(cores.share_now())
            self.checked = time.monotonic()
