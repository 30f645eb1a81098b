"""The project's trainers: TRL's, resumable after a crash, with checkpoints marked complete and policy snapshots.

A checkpoint counts as complete only once `CheckpointCompleted` has marked it (the trainer calls it after
the last file is written), so a run killed while saving leaves a checkpoint the next run removes rather
than loads (training/outputs.py). TRL 1.12's PPOTrainer gets resume support of its own here.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from transformers import TrainerCallback
from transformers.trainer import OPTIMIZER_NAME, SCHEDULER_NAME
from trl import RewardTrainer, SFTTrainer
from trl.experimental.ppo import PPOTrainer
from trl.experimental.ppo.ppo_trainer import OnlineTrainerState

from ..compat import KeepsTokenCount, collections_skip_the_setup, generate_with_kv_cache, save_ppo_policy
from .outputs import CHECKPOINT_DONE, CHECKPOINT_PREFIX, SNAPSHOTS, write_json

DATA_POSITION = "data_position.json"
POLICY_AND_VALUE = "policy_and_value.safetensors"


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


class ReplayableLoader:
    """A DataLoader that can be put back where it was: the epoch's shuffle and how far into it.

    Each pass over a shuffled DataLoader draws its order from the RNG states at the moment the pass starts.
    Keeping those states (the global one and the sampler's own generator, which accelerate adds for several
    processes) and the count of batches served since lets a resumed run redraw the same order and skip to
    the next batch, so it sees exactly the batches the uninterrupted run would have seen.
    """

    def __init__(self, loader) -> None:
        self.loader = loader
        self.epoch_rng, self.batches_into_epoch = None, 0
        self._replay = None

    def _generators(self) -> list:
        sampler = getattr(getattr(self.loader, "batch_sampler", None), "sampler", None)
        found = [getattr(self.loader, "synchronized_generator", None), getattr(sampler, "generator", None)]
        return list({id(g): g for g in found if g is not None}.values())

    def position(self) -> dict:
        return {
            "batches_into_epoch": self.batches_into_epoch,
            "epoch_rng": [state.tolist() for state in self.epoch_rng] if self.epoch_rng else None,
        }

    def restore(self, position: dict) -> None:
        """Make the next pass redraw the saved epoch's order and skip the batches already served."""
        if position["epoch_rng"] is not None:
            self._replay = position

    def __iter__(self):
        skip, rng_now = 0, None
        if self._replay is not None:
            rng_now = torch.get_rng_state()  # as the checkpoint left it
            saved = [torch.tensor(state, dtype=torch.uint8) for state in self._replay["epoch_rng"]]
            torch.set_rng_state(saved[0])
            for generator, state in zip(self._generators(), saved[1:]):
                generator.set_state(state)
            skip, self._replay = self._replay["batches_into_epoch"], None
        self.epoch_rng = [torch.get_rng_state()] + [g.get_state() for g in self._generators()]
        self.batches_into_epoch = 0
        for batch in self.loader:
            self.batches_into_epoch += 1
            if skip:
                skip -= 1
                if skip == 0:  # caught up: the global RNG back as the checkpoint left it; the sampler's own
                    torch.set_rng_state(rng_now)  # generator is now where the replayed pass leaves it
                continue
            yield batch

    def __len__(self) -> int:
        return len(self.loader)


class PolicySnapshots(TrainerCallback):
    """Every `every` updates, the policy alone as a loadable model in `<output_dir>/snapshots/update-<n>`:
    light (no optimizer, no value model) and never rotated away, so a run can be evaluated along the way
    (the report's over-optimisation curve)."""

    def __init__(self, trainer, every: int) -> None:
        self.trainer, self.every = trainer, every

    def on_step_end(self, args, state, control, **kwargs):
        if self.every > 0 and state.global_step % self.every == 0:
            folder = Path(args.output_dir) / SNAPSHOTS / f"update-{state.global_step:04d}"
            save_ppo_policy(self.trainer, self.trainer.processing_class, folder)


class ResumablePPOTrainer(PPOTrainer):
    """TRL 1.12's PPOTrainer, resumable from checkpoints, with cheap gc and cached generation.

    Upstream `train()` is one loop that always starts at update 1 (TRL closed resume support as
    "maintenance mode"). A checkpoint here holds the policy as a plain model (to sample from), the policy
    and value weights together (`policy_and_value.safetensors`), the optimizer and scheduler, the RNG
    states, the trainer state (update and episode counters, log history) and the data position. Resuming
    loads them all, runs the loop for the updates left only, and restores the counters as the loop begins
    (in `on_train_begin`, right after upstream zeroes them). Not under DeepSpeed, whose engine keeps its
    own checkpoint format: the stage refuses PPO checkpoints there.
    """

    def __init__(self, *args, snapshot_steps: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.add_callback(PolicySnapshots(self, snapshot_steps))
        self.dataloader = ReplayableLoader(self.dataloader)
        generate_with_kv_cache(self.accelerator.unwrap_model(self.model).policy, self.args)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        save_ppo_policy(self, self.processing_class, output_dir or self.args.output_dir)

    def create_model_card(self, *args, **kwargs) -> None:
        """Upstream's fails under DDP (it reads `.config` off the wrapper) at every checkpoint; the stage
        writes its own card when it finishes."""

    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)  # policy, optimizer, scheduler, RNG, trainer state, rotation
        if self.accelerator.is_main_process:
            folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            save_model(self.accelerator.unwrap_model(self.model), str(folder / POLICY_AND_VALUE))
            (folder / DATA_POSITION).write_text(json.dumps(self.dataloader.position()))
        self.accelerator.wait_for_everyone()

    def train(self, resume_from_checkpoint: str | None = None) -> None:
        with collections_skip_the_setup():
            return self._train(resume_from_checkpoint)

    def _train(self, resume_from_checkpoint: str | None) -> None:
        if resume_from_checkpoint is None:
            return super().train()
        saved = self._load_checkpoint(Path(resume_from_checkpoint))
        total = self.args.num_total_batches
        restore = _RestoreCounters(saved, total)
        self.callback_handler.callbacks.insert(0, restore)
        self.args.num_total_batches = total - saved.global_step  # upstream loops over these updates only
        try:
            return super().train()
        finally:
            self.args.num_total_batches = total
            self.callback_handler.remove_callback(restore)

    def _load_checkpoint(self, folder: Path) -> OnlineTrainerState:
        load_model(self.accelerator.unwrap_model(self.model), str(folder / POLICY_AND_VALUE))
        for part, name in ((self.optimizer, OPTIMIZER_NAME), (self.lr_scheduler, SCHEDULER_NAME)):
            part.load_state_dict(torch.load(folder / name, map_location="cpu", weights_only=True))
        self._load_rng_state(str(folder))  # upstream's, with torch.load(weights_only=True)
        self.dataloader.restore(json.loads((folder / DATA_POSITION).read_text()))
        return OnlineTrainerState.load_from_json(str(folder / "trainer_state.json"))


class _RestoreCounters:
    """A one-off callback that puts back the update and episode counters and the log history."""

    def __init__(self, saved: OnlineTrainerState, total_updates: int) -> None:
        self.saved, self.total_updates = saved, total_updates

    def __getattr__(self, event: str):
        return lambda *args, **kwargs: None  # every other callback event: nothing to do

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        state.global_step, state.episode = self.saved.global_step, self.saved.episode
        state.log_history = list(self.saved.log_history)
        state.max_steps = self.total_updates
