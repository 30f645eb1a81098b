"""Stage 4: reinforcement learning from human feedback with the project's PPO trainer (`make ppo`).

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/ppo.py --config recipes/tiny/ppo.yaml

The policy and the frozen reference start from the SFT model (`sft_model_path`); the reward model and
the value model start from the reward model (`reward_model_path`). The trainer is the project's own
(rlhf_recipes.training.ppo, docs/ppo.md; TRL removed its PPOTrainer in 1.13) and keeps TRL 1.12's
field and metric names. Prompts come from any dataset with a `prompt` column (conversational or
plain), rendered with the SFT model's chat template and left-padded. The implementation details are
set in the YAML, in plain sight: stop at EOS, the missing-EOS penalty, the KL coefficient to the
reference, response length, temperature, whitening, PPO epochs and minibatches. The reward model must
share the policy's tokenizer: PPO hands it the policy's token ids, so a different vocabulary would be
scored as noise, and the script refuses it.

Memory: four models (policy, frozen reference, reward model, value model to train; with `use_peft` the
reference is the policy with its adapter off). RLOO and GRPO (recipes/online.py) drop the value model
and hold three; DPO (recipes/dpo.py) holds two.
"""

import rlhf_recipes  # noqa: F401  # isort: skip  (first: bitsandbytes loads on use, not with peft; compat.py)
from dataclasses import dataclass

from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from trl import ModelConfig, ScriptArguments, get_peft_config

from rlhf_recipes.evaluation.judging import EvalArguments
from rlhf_recipes.stages.online import PromptArguments, RLStage, refuse_unused_model_fields
from rlhf_recipes.training.chat import prepare_tokenizer
from rlhf_recipes.training.config import RecipeError, cli
from rlhf_recipes.training.loading import load_pretrained
from rlhf_recipes.training.ppo import PPOConfig, PPOTrainer
from rlhf_recipes.training.trainers import SnapshotArguments

# what users watch in PPO (TRL's names -> metrics.json's): reward up, KL small and positive, ratio near 1
WATCHED = {
    "objective/rlhf_reward": "rlhf_reward", "objective/scores": "score", "objective/kl": "kl",
    "objective/entropy": "entropy", "policy/clipfrac_avg": "clip_fraction", "loss/value_avg": "value_loss",
    "val/ratio": "ratio", "val/num_eos_tokens": "eos_tokens", "eps": "episodes_per_second",
}  # fmt: skip
# what later stages (the report) read from this stage's metrics.json rather than repeat in their own YAML
SHARED_SETTINGS = ("temperature", "missing_eos_penalty", "kl_coef", "response_length")


@dataclass
class PPOArguments(PromptArguments, ScriptArguments, EvalArguments, SnapshotArguments):  # PromptArguments first
    pass


class PPO(RLStage):
    name, arguments, title = "ppo", (PPOArguments, PPOConfig, ModelConfig), "PPO policy"
    summary = (
        "The SFT model trained with PPO against the reward model, with a KL penalty to the SFT model "
        "(rlhf-recipes stage 4). Prompt it with the chat template."
    )
    watched, completion_length = WATCHED, "response_length"

    def check(self) -> None:
        refuse_unused_model_fields(self.model_args, "PPO", "sft_model_path and reward_model_path")

    def load_models(self) -> None:
        """Policy and reference from the SFT model; reward and value models from the reward model."""
        config, sft_fix = self.config, "run `make sft` first or set sft_model_path"
        rm_fix = "run `make reward` first or set reward_model_path"
        kwargs = {"dtype": self.model_args.dtype, "attn_implementation": self.model_args.attn_implementation}
        self.tokenizer = load_pretrained(AutoTokenizer, config.sft_model_path, sft_fix, padding_side="left")
        self.policy = load_pretrained(AutoModelForCausalLM, config.sft_model_path, sft_fix, **kwargs)
        prepare_tokenizer(self.tokenizer, self.policy)
        if load_pretrained(AutoTokenizer, config.reward_model_path, rm_fix).get_vocab() != self.tokenizer.get_vocab():
            raise RecipeError(
                f"reward model {config.reward_model_path} uses a different tokenizer than the policy "
                f"{config.sft_model_path}, and PPO scores the policy's token ids as they are; train the reward "
                "model from the SFT model (make reward) or from a model with the policy's tokenizer"
            )
        score = (AutoModelForSequenceClassification, config.reward_model_path, rm_fix)
        self.reward, self.value = (load_pretrained(*score, num_labels=1, **kwargs) for _ in range(2))
        # with LoRA the reference is the policy with its adapter switched off
        peft = self.model_args.use_peft
        self.ref = None if peft else load_pretrained(AutoModelForCausalLM, config.sft_model_path, sft_fix, **kwargs)
        for model in filter(None, (self.ref, self.reward, self.value)):
            model.config.pad_token_id = self.tokenizer.pad_token_id

    def trainer(self, callbacks=()):
        try:
            return PPOTrainer(
                args=self.config,
                processing_class=self.tokenizer,
                model=self.policy,
                ref_model=self.ref,
                reward_model=self.reward,
                value_model=self.value,
                train_dataset=self.prompts.select_columns(["input_ids"]),
                peft_config=get_peft_config(self.model_args),
                callbacks=list(callbacks),
            )
        except (ValueError, AssertionError) as e:  # batch sizes that do not divide, and the like
            raise RecipeError(f"PPO settings rejected: {e}") from e

    def measure(self, trainer, result) -> dict:
        config = {key: getattr(self.config, key) for key in SHARED_SETTINGS}
        return {"episodes": trainer.state.episode, **super().measure(trainer, result), "config": config}

    def trained_model(self, trainer):
        return trainer.accelerator.unwrap_model(trainer.model).policy

    def base_model(self) -> str:
        return self.config.sft_model_path


if __name__ == "__main__":
    cli(PPO.main)
