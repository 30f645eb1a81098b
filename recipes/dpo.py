"""Direct Preference Optimization with TRL's DPOTrainer (`make dpo`): the preferences, without a reward model.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/dpo.py --config recipes/tiny/dpo.yaml

From the SFT model (`model_name_or_path`), on the ranked pairs of `make compare` (the pairs the reward
model learned from), with the SFT model as the frozen reference. DPO is offline: it samples nothing and
trains no reward model; its loss raises the log-probability of the chosen answer over the rejected one
relative to the reference, with `beta` the strength of the pull to the reference (PPO's `kl_coef`).

Memory: two models (policy and reference; with `use_peft` the reference is the policy with its adapter
off, so one). The held-out pairs measure its implicit reward's accuracy; the gold labeler judges the
saved policy on the held-out prompts, as for SFT and PPO.
"""

import rlhf_recipes  # noqa: F401  # isort: skip  (first: bitsandbytes loads on use, not with peft; compat.py)
from dataclasses import dataclass, field

from transformers import AutoModelForCausalLM
from trl import DPOConfig, DPOTrainer, ModelConfig, ScriptArguments, get_peft_config

from rlhf_recipes.evaluation.judging import EvalArguments
from rlhf_recipes.stages.runner import Stage
from rlhf_recipes.training.config import RecipeError, cli
from rlhf_recipes.training.loading import HeldOutArguments, dataset_help, load_splits
from rlhf_recipes.training.models import load_model, load_saved
from rlhf_recipes.training.trainers import SnapshotArguments

DPO_COLUMNS = ("prompt", "chosen", "rejected")  # comparisons carry more (source, gold agreement): DPO reads these


@dataclass
class DPOArguments(ScriptArguments, EvalArguments, HeldOutArguments, SnapshotArguments):
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": dataset_help("`chosen` and `rejected`, with an optional `prompt` (conversational or plain)")
        },
    )


class DPO(Stage):
    name, arguments, title = "dpo", (DPOArguments, DPOConfig, ModelConfig), "DPO policy"
    world_options = dict(eval_prompts="eval_prompts", world_file="world.json")
    summary = (
        "The SFT model trained with Direct Preference Optimization on ranked answer pairs, the SFT model as "
        "reference (rlhf-recipes). Prompt it with the chat template."
    )

    def prepare(self) -> None:
        """The SFT model to train (DPOTrainer copies it as the frozen reference), its tokenizer, and the pairs."""
        args, config, fix = self.args, self.config, "run `make sft` first or set model_name_or_path"
        self.model, self.tokenizer = load_model(AutoModelForCausalLM, self.model_args, config, fix)
        splits, fix = (
            [args.dataset_train_split, args.dataset_test_split],
            "run `make compare` first or set dataset_name",
        )
        held_out = (args.eval_split_ratio, config.seed)
        data = load_splits(
            args.dataset_name, splits, [{"chosen", "rejected"}], fix, args.dataset_config, held_out=held_out
        )
        keep = [c for c in DPO_COLUMNS if c in data[splits[0]].column_names]
        self.train_set, self.test_set = (data[split].select_columns(keep) for split in splits)
        self.data |= {"train_pairs": len(self.train_set), "eval_pairs": len(self.test_set)}

    def trainer(self, callbacks=()):
        try:
            return DPOTrainer(
                model=self.model,
                args=self.config,
                train_dataset=self.train_set,
                eval_dataset=self.test_set,
                processing_class=self.tokenizer,
                peft_config=get_peft_config(self.model_args),
                callbacks=list(callbacks),
            )
        except ValueError as e:
            raise RecipeError(f"DPO settings rejected: {e}") from e

    def measure(self, trainer, result) -> dict:
        heldout, config = trainer.evaluate(), self.config
        per_update = (
            config.per_device_train_batch_size * config.gradient_accumulation_steps * trainer.accelerator.num_processes
        )
        return {
            "pairs_seen": trainer.state.global_step * per_update,
            "updates": trainer.state.global_step,
            "train_loss": round(result.training_loss, 4),
            "heldout": {
                "accuracy": round(heldout["eval_rewards/accuracies"], 3),
                "margin": round(heldout["eval_rewards/margins"], 3),
                "loss": round(heldout["eval_loss"], 4),
            },
            "config": {"beta": config.beta, "loss_type": config.loss_type},
        }

    def evaluate(self, out) -> dict:
        if not self.judging:
            return {}
        policy = load_saved(AutoModelForCausalLM, out, self.tokenizer)
        return {"dpo": self.judge(policy)[0]}

    def card_metrics(self, metrics: dict) -> dict:
        return {"heldout_accuracy": metrics["heldout"]["accuracy"], **metrics}


if __name__ == "__main__":
    cli(DPO.main)
