"""PPOConfig: the project's PPO settings, under the field names TRL 1.12's PPOConfig gave them.

A recipe written for TRL 1.12's `trl.experimental.ppo.PPOConfig` (removed in TRL 1.13) keeps working: every
field the project's YAMLs use means what it meant there. Fields that configured TRL's own machinery and no
recipe set (the derived batch sizes, adapter names, dataset_num_proc) are gone, so a YAML naming them is
refused rather than ignored. The inherited TrainingArguments keep transformers' defaults (TRL raised bf16,
activation checkpointing and logging_steps): the recipes write those values themselves.

New, each off by default: an adaptive KL coefficient (`kl_target`, `kl_horizon`), a critic warm-up
(`critic_warmup_steps`) and reward normalisation (`reward_norm_batches`); learning-rate warm-up is
TrainingArguments' `warmup_steps`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transformers import TrainingArguments


def _help(text: str) -> dict:
    return {"help": text}


@dataclass
class PPOConfig(TrainingArguments):
    """PPO's settings on top of transformers' TrainingArguments (optimizer, schedule, precision, saving)."""

    sft_model_path: str = field(default="outputs/tiny/sft", metadata=_help("The policy's and the reference's start."))
    reward_model_path: str = field(
        default="outputs/tiny/reward", metadata=_help("The reward model; the value model starts from it.")
    )
    learning_rate: float = field(default=3e-6, metadata=_help("AdamW's learning rate for policy and value model."))
    total_episodes: int | None = field(
        default=None, metadata=_help("Answers sampled and trained on in all; unset: num_train_epochs passes.")
    )
    response_length: int = field(default=53, metadata=_help("Most tokens sampled per answer."))
    stop_token: Literal["eos"] | None = field(
        default=None, metadata=_help("eos: an answer ends at its first EOS (later tokens become padding).")
    )
    stop_token_id: int | None = field(default=None, metadata=_help("The stop token by id (instead of stop_token)."))
    temperature: float = field(default=0.7, metadata=_help("Sampling temperature; log-probs use the same."))
    missing_eos_penalty: float | None = field(
        default=None, metadata=_help("Subtracted from the score of an answer without EOS; unset: none.")
    )
    local_rollout_forward_batch_size: int = field(
        default=64, metadata=_help("Answers per generate and scoring call (memory vs speed).")
    )
    num_sample_generations: int = field(
        default=10, metadata=_help("Times in the run a few sampled answers and scores are printed; 0: never.")
    )
    num_ppo_epochs: int = field(default=4, metadata=_help("Passes of PPO updates over each batch of rollouts."))
    num_mini_batches: int = field(default=1, metadata=_help("Optimizer steps per pass: the batch split in this many."))
    kl_coef: float = field(default=0.05, metadata=_help("Weight of the per-token KL penalty to the reference."))
    kl_estimator: Literal["k1", "k3"] = field(
        default="k1", metadata=_help("k1: log p - log q; k3: (q/p - 1) - log(q/p), never negative.")
    )
    kl_target: float | None = field(
        default=None, metadata=_help("Adaptive KL (Ziegler et al. 2019): steer kl_coef toward this KL; unset: fixed.")
    )
    kl_horizon: int = field(default=10000, metadata=_help("Adaptive KL: episodes over which kl_coef moves."))
    whiten_rewards: bool = field(default=False, metadata=_help("Whiten the per-token rewards (mean kept)."))
    reward_norm_batches: int = field(
        default=0,
        metadata=_help(
            "Before the first update, score this many batches of the initial policy's answers and shift and scale "
            "every later score (and the value model) to mean 0, std 1 on them; 0: the reward model's raw scores."
        ),
    )
    max_grad_norm: float = field(
        default=0.0,
        metadata=_help("Clip the policy's and value model's gradient to this norm; 0: no clipping (as TRL's PPO)."),
    )
    cliprange: float = field(default=0.2, metadata=_help("PPO's clip range of the probability ratio."))
    vf_coef: float = field(default=0.1, metadata=_help("Weight of the value loss."))
    cliprange_value: float = field(default=0.2, metadata=_help("Clip range of the value around its old value."))
    gamma: float = field(default=1.0, metadata=_help("Discount factor."))
    lam: float = field(default=0.95, metadata=_help("GAE's lambda."))
    critic_warmup_steps: int = field(
        default=0, metadata=_help("The first this many updates train the value model only; 0: none.")
    )
    ds3_gather_for_generation: bool = field(
        default=True, metadata=_help("ZeRO-3: gather the policy's weights to generate (fast; needs the memory).")
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        # a YAML value skips argparse's choices, so the Literal fields are checked here
        if self.kl_estimator not in ("k1", "k3"):
            raise ValueError(f"kl_estimator is {self.kl_estimator!r}; use k1 or k3")
        if self.stop_token not in (None, "eos"):
            raise ValueError(f"stop_token is {self.stop_token!r}; use eos, or null and stop_token_id")
        if self.stop_token is not None and self.stop_token_id is not None:
            raise ValueError("set stop_token or stop_token_id, not both")
        if self.total_episodes is not None and self.total_episodes < 1:
            raise ValueError(f"total_episodes is {self.total_episodes}; PPO needs at least one batch of episodes")
        if self.kl_target is not None and self.kl_target <= 0:
            raise ValueError(f"kl_target is {self.kl_target}; set a positive KL or leave it unset for a fixed kl_coef")
        if self.reward_norm_batches < 0:
            raise ValueError(f"reward_norm_batches is {self.reward_norm_batches}; use 0 (raw scores) or more")
        for name in ("num_ppo_epochs", "num_mini_batches", "local_rollout_forward_batch_size", "response_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} is {getattr(self, name)}; it must be at least 1")
