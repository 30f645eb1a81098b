"""Stage 2: supervised fine-tuning on demonstrations with TRL's SFTTrainer (`make sft`).

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/sft.py --config recipes/tiny/sft.yaml

Data: conversational `messages`, or `prompt`/`completion` (conversational or plain), from the embedded
world or any local or hub dataset. The loss falls on the assistant's tokens only (EOS included, so the
model learns to stop). Optional replay of pretraining text keeps the base model's knowledge alive.
LoRA/QLoRA through TRL's ModelConfig (`use_peft`, `lora_r`, `load_in_4bit`, ...); `merge_adapter`
makes the output a full model for the next stage (the adapter kept in `adapter/`). The gold labeler
judges the base and the SFT model on held-out prompts before and after, and a few sample answers are printed.
"""

import rlhf_recipes  # noqa: F401  # isort: skip  (first: bitsandbytes loads on use, not with peft; compat.py)
import random
from dataclasses import dataclass, field

from datasets import concatenate_datasets
from transformers import AutoModelForCausalLM
from trl import ModelConfig, ScriptArguments, SFTConfig, get_peft_config

from rlhf_recipes.evaluation.judging import EvalArguments
from rlhf_recipes.stages.runner import Stage
from rlhf_recipes.training import chat
from rlhf_recipes.training.config import cli
from rlhf_recipes.training.loading import HeldOutArguments, dataset_help, load_splits
from rlhf_recipes.training.models import load_model, load_saved
from rlhf_recipes.training.trainers import ResumableSFTTrainer


@dataclass
class SFTArguments(ScriptArguments, EvalArguments, HeldOutArguments):
    dataset_name: str | None = field(
        default=None,
        metadata={"help": dataset_help("`messages`, or `prompt` and `completion` (conversational or plain)")},
    )
    replay_dataset: str | None = field(
        default="auto",
        metadata={
            "help": "A `text` dataset (e.g. the pretraining corpus) mixed into SFT. auto: the world's pretraining "
            "text when dataset_name is a `make data` dataset, else none; none: no replay; or a dataset path."
        },
    )
    replay_fraction: float = field(
        default=0.0, metadata={"help": "Replay rows added, as a fraction of the SFT training rows."}
    )
    num_samples_to_print: int = field(default=4, metadata={"help": "Sample answers printed at the end."})
    merge_adapter: bool = field(
        default=False, metadata={"help": "With use_peft: save the merged full model (the adapter goes to adapter/)."}
    )


class SFT(Stage):
    name, arguments, title = "sft", (SFTArguments, SFTConfig, ModelConfig), "SFT model"
    world_options = dict(replay_dataset="pretrain", eval_prompts="eval_prompts", world_file="world.json")
    summary = (
        "Supervised fine-tuning of the base model on assistant demonstrations (rlhf-recipes stage 2). "
        "Prompt it with the tokenizer's chat template."
    )

    def prepare(self) -> None:
        args, config = self.args, self.config
        fix, columns = "run `make pretrain` first", [{"messages"}, {"prompt", "completion"}]
        self.model, self.tokenizer = load_model(AutoModelForCausalLM, self.model_args, config, fix)
        splits = [args.dataset_train_split] + ([args.dataset_test_split] if config.eval_strategy != "no" else [])
        held_out, fix = (args.eval_split_ratio, config.seed), "run `make data` first or set dataset_name"
        raw = load_splits(args.dataset_name, splits, columns, fix, args.dataset_config, held_out=held_out)
        limit = config.max_length  # load_model checked it against the model's context
        done = {
            name: chat.tokenized_dialogues(ds, self.tokenizer, limit, args.dataset_name) for name, ds in raw.items()
        }
        self.train_set, self.test_set = done[args.dataset_train_split], done.get(args.dataset_test_split)
        if args.replay_dataset and args.replay_fraction > 0:
            text = load_splits(args.replay_dataset, ["train"], [{"text"}], "set replay_dataset to a `text` dataset")
            count = min(len(text["train"]), round(len(self.train_set) * args.replay_fraction))
            picked = text["train"].shuffle(seed=config.seed).select(range(count))
            replay = chat.tokenized_texts(picked, self.tokenizer, limit, args.replay_dataset)
            self.train_set = concatenate_datasets([self.train_set, replay]).shuffle(seed=config.seed)
        self.data |= {"train_rows": len(self.train_set), "eval_rows": len(self.test_set or [])}
        self.data["replay_dataset"] = args.replay_dataset

    def before_training(self) -> None:
        self.base, self.judged_base = self.judge(self.model)

    def trainer(self, callbacks=()):
        return ResumableSFTTrainer(
            model=self.model,
            args=self.config,
            train_dataset=self.train_set,
            eval_dataset=self.test_set,
            processing_class=self.tokenizer,
            peft_config=get_peft_config(self.model_args),
            callbacks=list(callbacks),
        )

    def measure(self, trainer, result) -> dict:
        # TRL logs the token count every logging_steps; a run shorter than that has none
        tokens = next((e["num_tokens"] for e in reversed(trainer.state.log_history) if "num_tokens" in e), None)
        metrics = {"train_loss": round(result.training_loss, 4), "train_tokens": tokens}
        metrics["tokens_per_second"] = tokens and round(tokens / result.metrics["train_runtime"])
        if self.test_set is not None:
            metrics["eval_loss"] = round(trainer.evaluate()["eval_loss"], 4)
        return metrics

    def evaluate(self, out) -> dict:
        merge = self.model_args.use_peft and self.args.merge_adapter
        model = load_saved(AutoModelForCausalLM, out, self.tokenizer, merge)
        after, judged = self.judge(model)
        return {"base": self.base, "sft": after, "samples": self.samples(judged)}

    def samples(self, judged: list) -> list[dict]:
        """A few held-out answers of the base model and the SFT model side by side, printed and kept."""
        shown = []
        count = min(self.args.num_samples_to_print, len(judged))
        for i in random.Random(self.config.seed).sample(range(len(judged)), count):
            before = self.judged_base[i].completion.text if self.judged_base else None
            answer, gold = judged[i].completion.text, judged[i].gold["total"]
            shown.append({"prompt": judged[i].prompt, "base": before, "sft": answer, "sft_gold": gold})
            print(f"\nQ: {judged[i].prompt}\n  base: {before!r}\n  sft:  {answer!r}  (gold {gold})")
        return shown

    def datasets(self) -> list:
        return [self.args.dataset_name, self.args.replay_dataset if self.args.replay_fraction > 0 else None]

    def card_metrics(self, metrics: dict) -> dict:
        return {**metrics, **{f"sft_{k}": v for k, v in metrics.get("sft", {}).items()}}

    def shown(self, metrics: dict) -> dict:
        names = {"gold": "gold_score", "fact_accuracy": "fact_accuracy"}
        judged = {f"{row}_{k}": metrics.get(row, {}).get(name) for row in ("base", "sft") for k, name in names.items()}
        return {"train_loss": metrics["train_loss"], **judged}


if __name__ == "__main__":
    cli(SFT.main)
