"""Online RL without a value model: Group Relative Policy Optimization, TRL's `GRPOTrainer` (`make grpo`).

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/grpo.py --config recipes/tiny/grpo.yaml

From the SFT model (`model_name_or_path`), on the same prompts PPO uses (the first `num_eval_prompts`
held out), with the reward model (`reward_model_path`) as reward function and a KL penalty to the SFT
model. Each prompt gets `num_generations` answers; an answer's advantage is its reward less the
mean of its group's rewards, scaled by their std (Shao et al. 2024), so no value model is trained.

Memory: three models (policy, frozen reference, reward model); PPO holds four (and a value model to
train). From PPO's settings: `kl_coef` -> `beta`, `cliprange` -> `epsilon`, `num_ppo_epochs` ->
`num_iterations`, `response_length` -> `max_completion_length`, `total_episodes` -> `max_steps` x
`per_device_train_batch_size` / `num_iterations` (the answers sampled). PPO's `missing_eos_penalty` is a
second reward function here (see `rlhf_recipes.training.online`); `stop_token` needs nothing (generation
stops at EOS). The reward model scores decoded text through its own tokenizer, so unlike PPO it may use a
vocabulary other than the policy's.
"""

from __future__ import annotations

from collections.abc import Sequence

from accelerate import PartialState
from trl import GRPOConfig, GRPOTrainer, ModelConfig, TrlParser

from rlhf_recipes.training.config import cli, parse
from rlhf_recipes.training.launch import apply_launch
from rlhf_recipes.training.online import OnlineArguments, train_online
from rlhf_recipes.training.outputs import TrainingOutputArguments, staged_training_output
from rlhf_recipes.training.world_inputs import WORLD_FILE, follow_world

# which of the world's extras this stage follows (`auto` options): the bench resolves them the same way
WORLD_OPTIONS = dict(eval_prompts="eval_prompts", world_file=WORLD_FILE)


def make_parser() -> TrlParser:
    return TrlParser((OnlineArguments, GRPOConfig, ModelConfig, TrainingOutputArguments))


def main(argv: Sequence[str] | None = None) -> dict:
    parser = make_parser()
    args, config, model_args, output_args = parse(parser, apply_launch(parser, argv))
    world = follow_world(args, args.dataset_name, **WORLD_OPTIONS)
    with staged_training_output(config, args, model_args, stage="grpo", options=output_args) as out:
        metrics = train_online(GRPOTrainer, "grpo", args, config, model_args, out, world)
    PartialState().print({k: v for k, v in metrics.items() if k != "ranks"})
    return metrics


if __name__ == "__main__":
    cli(main)
