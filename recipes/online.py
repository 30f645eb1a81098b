"""Online RL without a value model, RLOO or GRPO (`make rloo`, `make grpo`): TRL's RLOOTrainer or GRPOTrainer.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/online.py --config recipes/tiny/rloo.yaml
    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/online.py --config recipes/tiny/grpo.yaml

The YAML's `method` picks the trainer. From the SFT model (`model_name_or_path`), on the same prompts PPO
uses (the first `num_eval_prompts` held out), with the reward model (`reward_model_path`) as reward
function and a KL penalty to the SFT model. Each prompt gets `num_generations` answers, and an answer's
advantage is its reward less a baseline from the prompt's other answers, so no value model is trained:
RLOO (Ahmadian et al. 2024) subtracts the mean reward of the other answers; GRPO (Shao et al. 2024) the
group's mean, scaled by the group's std.

Memory: three models (policy, frozen reference, reward model); PPO holds four (and a value model to
train). From PPO's settings: `kl_coef` -> `beta`, `cliprange` -> `epsilon`, `num_ppo_epochs` ->
`num_iterations`, `response_length` -> `max_completion_length`, `total_episodes` -> `max_steps` x
`per_device_train_batch_size` / `num_iterations` (the answers sampled). PPO's `missing_eos_penalty` is a
second reward function here; `stop_token` needs nothing (generation stops at EOS). The reward model scores
decoded text through its own tokenizer, so unlike PPO it may use a vocabulary other than the policy's.
"""

import rlhf_recipes  # noqa: F401  # isort: skip  (first: bitsandbytes loads on use, not with peft; compat.py)
from trl import GRPOConfig, GRPOTrainer, ModelConfig, RLOOConfig, RLOOTrainer

from rlhf_recipes.stages.online import GroupArguments, GroupStage, method_of
from rlhf_recipes.stages.runner import Stage
from rlhf_recipes.training.config import cli


class RLOO(GroupStage):
    name, arguments, title = "rloo", (GroupArguments, RLOOConfig, ModelConfig), "RLOO policy"
    trainer_class = RLOOTrainer
    summary = (
        "The SFT model trained with REINFORCE Leave-One-Out against the reward model, with a KL penalty (beta) to "
        "the SFT model (rlhf-recipes). Prompt it with the chat template."
    )


class GRPO(GroupStage):
    name, arguments, title = "grpo", (GroupArguments, GRPOConfig, ModelConfig), "GRPO policy"
    trainer_class = GRPOTrainer
    summary = (
        "The SFT model trained with Group Relative Policy Optimization against the reward model, with a KL "
        "penalty (beta) to the SFT model (rlhf-recipes). Prompt it with the chat template."
    )


class Online(Stage):
    """RLOO or GRPO, as the YAML's `method` says."""

    methods = {"rloo": RLOO, "grpo": GRPO}

    @classmethod
    def from_argv(cls, argv=None):
        import sys

        argv = list(sys.argv[1:] if argv is None else argv)
        return cls.methods[method_of(argv, cls.methods)].from_argv(argv)


if __name__ == "__main__":
    cli(Online.main)
