"""Stage 3: train a reward model on ranked pairs with TRL's RewardTrainer (`make reward`).

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/reward.py --config recipes/tiny/reward.yaml

An `AutoModelForSequenceClassification` with one output, initialised from the SFT model, learns from
`chosen`/`rejected` pairs (conversational or plain): by default the comparisons `make compare`
collected. Its score is read at the last real token, which is EOS because PAD is a different token.
The score head starts at N(0, 1/sqrt(d_model + 1)) and, optionally, is rescaled so rewards of the SFT
model's answers have std 1 (the implementation details of RLHF with PPO). Afterwards it reports
pairwise accuracy and margin on held-out pairs by kind of difference, and how often it agrees with the
gold labeler on fresh SFT answers it never saw (proxy vs gold), next to the label-noise ceiling.
With LoRA (`use_peft`, `lora_task_type: SEQ_CLS`) the output is still a full model, the adapter merged
(and kept in `adapter/`), because PPO loads the reward model whole.
"""

import rlhf_recipes  # noqa: F401  # isort: skip  (first: bitsandbytes loads on use, not with peft; compat.py)
from dataclasses import dataclass, field

from transformers import AutoModelForSequenceClassification
from trl import ModelConfig, RewardConfig, ScriptArguments, get_peft_config

from rlhf_recipes.stages.runner import Stage
from rlhf_recipes.training.config import RecipeError, cli
from rlhf_recipes.training.context import say_cut
from rlhf_recipes.training.loading import HeldOutArguments, dataset_help, load_splits
from rlhf_recipes.training.models import load_model, load_saved
from rlhf_recipes.training.reward_model import fresh_score_head, normalize_saved, pair_accuracy
from rlhf_recipes.training.trainers import ResumableRewardTrainer

PAIRS = [{"chosen", "rejected"}]


@dataclass
class RewardArguments(ScriptArguments, HeldOutArguments):
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": dataset_help("`chosen` and `rejected`, with an optional `prompt` (conversational or plain)")
        },
    )
    heldout_pairs: str | None = field(
        default="auto",
        metadata={
            "help": "More held-out pairs to report accuracy on (their `test` split). auto: the world's offline "
            "preferences when dataset_name comes from a `make data` world, else none; none: skip; or a path."
        },
    )
    normalize_rewards: bool = field(
        default=True, metadata={"help": "Rescale the score head so rewards of SFT answers have std 1."}
    )
    max_normalization_samples: int = field(default=512, metadata={"help": "SFT answers used to measure the std."})


class Reward(Stage):
    name, arguments, title = "reward", (RewardArguments, RewardConfig, ModelConfig), "Reward model"
    world_options = dict(heldout_pairs="preferences")
    summary = (
        "A reward model (one-output sequence classifier) trained on ranked answer pairs (rlhf-recipes stage 3). "
        "Higher score: the answer people prefer."
    )
    load_with = (
        "`AutoModelForSequenceClassification.from_pretrained` (one output: the reward, read at the last real token "
        "of prompt + answer in the chat template)"
    )

    def check(self) -> None:
        if self.model_args.use_peft and self.model_args.lora_task_type != "SEQ_CLS":
            raise RecipeError(
                f"a reward model's LoRA needs lora_task_type: SEQ_CLS (got {self.model_args.lora_task_type}), "
                "so the score head is trained and saved with the adapter"
            )

    def prepare(self) -> None:
        """The SFT model with a fresh one-output head, its tokenizer, and the train/test pairs."""
        args, config, fix = self.args, self.config, "run `make sft` first"
        self.model, self.tokenizer = load_model(
            AutoModelForSequenceClassification, self.model_args, config, fix, num_labels=1
        )
        fresh_score_head(self.model)
        splits, fix = (
            [args.dataset_train_split, args.dataset_test_split],
            "run `make compare` first or set dataset_name",
        )
        held_out = (args.eval_split_ratio, config.seed)
        data = load_splits(args.dataset_name, splits, PAIRS, fix, args.dataset_config, held_out=held_out)
        self.train_set, self.test_set = data[args.dataset_train_split], data[args.dataset_test_split]
        extra = args.heldout_pairs and load_splits(args.heldout_pairs, ["test"], PAIRS, "set heldout_pairs, or none")
        self.extra = extra["test"] if extra else None
        self.data |= {"train_pairs": len(self.train_set), "eval_pairs": len(self.test_set)}
        self.data["heldout_pairs"] = args.heldout_pairs

    def trainer(self, callbacks=()):
        trainer = ResumableRewardTrainer(
            model=self.model,
            args=self.config,
            train_dataset=self.train_set,
            eval_dataset=self.test_set,
            processing_class=self.tokenizer,
            peft_config=get_peft_config(self.model_args),
            callbacks=list(callbacks),
        )
        if len(trainer.train_dataset) == 0:
            raise RecipeError(
                f"every training pair is longer than max_length={self.config.max_length} tokens; raise max_length"
            )
        dropped = len(self.train_set) - len(trainer.train_dataset)  # RewardTrainer drops pairs past max_length
        say_cut("training pairs", dropped, len(self.train_set), f"max_length {self.config.max_length}", "dropped them")
        return trainer

    def measure(self, trainer, result) -> dict:
        return {
            "train_loss": round(result.training_loss, 4),
            "train_runtime_s": round(result.metrics["train_runtime"], 1),
        }

    def evaluate(self, out) -> dict:
        """Normalise the saved model's scores, then measure its accuracy on pairs it never trained on."""
        model = load_saved(
            AutoModelForSequenceClassification, out, self.tokenizer, self.model_args.use_peft, num_labels=1
        )
        found = {}
        if self.args.normalize_rewards:
            own = self.train_set
            if "source" in own.column_names:  # the SFT model's own answers, where the comparisons say which
                own = own.filter(lambda row: row["source"] == "sft_samples")
            own = own.select(range(min(len(own), self.args.max_normalization_samples)))
            found = normalize_saved(model, self.tokenizer, own, out)
        found["heldout"] = pair_accuracy(model, self.tokenizer, self.test_set)
        if self.extra is not None:
            found["heldout_offline"] = pair_accuracy(model, self.tokenizer, self.extra)
        return found

    def card_metrics(self, metrics: dict) -> dict:
        return {"heldout_accuracy": metrics.get("heldout", {}).get("accuracy"), **metrics}


if __name__ == "__main__":
    cli(Reward.main)
