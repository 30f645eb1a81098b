"""Stage 2: supervised fine-tuning on demonstrations with TRL's SFTTrainer (`make sft`).

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/sft.py --config recipes/tiny/sft.yaml

Data: conversational `messages`, or `prompt`/`completion` (conversational or plain), from the embedded
world or any local or hub dataset. The loss falls on the assistant's tokens only (EOS included, so the
model learns to stop). Optional replay of pretraining text keeps the base model's knowledge alive.
LoRA/QLoRA through TRL's ModelConfig (`use_peft`, `lora_r`, `load_in_4bit`, ...); `merge_adapter`
makes the output a full model for the next stage (the adapter kept in `adapter/`). The gold labeler
judges the base and the SFT model on held-out prompts before and after, and a few sample answers are printed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from accelerate import PartialState
from datasets import concatenate_datasets
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
from trl import ModelConfig, ScriptArguments, SFTConfig, TrlParser, get_peft_config

from rlhf_recipes.compat import CheckpointCompleted, ResumableSFTTrainer
from rlhf_recipes.evaluation.judging import EvalArguments, evaluate_model, load_judging
from rlhf_recipes.training.chat import prepare_tokenizer, training_template
from rlhf_recipes.training.config import RecipeError, cli, parse
from rlhf_recipes.training.launch import apply_launch, rank_summary
from rlhf_recipes.training.loading import (
    HeldOutArguments,
    dataset_help,
    load_pretrained,
    load_splits,
    load_trained,
    merge_saved_adapter,
    model_kwargs,
    tokenizer_kwargs,
)
from rlhf_recipes.training.outputs import (
    Stopwatch,
    TrainingOutputArguments,
    last_checkpoint,
    staged_training_output,
    write_json,
    write_model_card,
)
from rlhf_recipes.training.world_inputs import WORLD_FILE, follow_world, world_record

DIALOGUE_COLUMNS = [{"messages"}, {"prompt", "completion"}]


# which of the world's extras this stage follows (`auto` options): the bench resolves them the same way
WORLD_OPTIONS = dict(replay_dataset="pretrain", eval_prompts="eval_prompts", world_file=WORLD_FILE)


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


def make_parser() -> TrlParser:
    return TrlParser((SFTArguments, SFTConfig, ModelConfig, TrainingOutputArguments))


def load_model(model_args: ModelConfig, training_args: SFTConfig):
    """The base model and its tokenizer, given a distinct PAD and a chat template (the recipe's, if it names one)."""
    name, fix = model_args.model_name_or_path, "run `make pretrain` first"
    model = load_pretrained(AutoModelForCausalLM, name, fix, **model_kwargs(model_args, training_args))
    tokenizer = load_pretrained(AutoTokenizer, name, fix, **tokenizer_kwargs(model_args, training_args))
    chat_template_path = training_args.chat_template_path
    if chat_template_path:
        template = Path(chat_template_path)
        if not template.is_file():
            raise RecipeError(f"chat_template_path {template} not found; point it at a .jinja file")
        tokenizer.chat_template = template.read_text()
    return model, prepare_tokenizer(tokenizer, model)


def tokenize_dialogue(example: dict, tokenizer, template: str, max_length: int) -> dict:
    """input_ids and labels, with -100 everywhere but on the assistant's tokens."""
    if "messages" in example:
        messages = example["messages"]
    elif isinstance(example["prompt"], list):
        messages = example["prompt"] + example["completion"]
    else:  # plain prompt/completion text
        prompt = tokenizer(example["prompt"], add_special_tokens=False).input_ids
        completion = tokenizer(example["completion"], add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        ids = (prompt + completion)[:max_length]
        return {"input_ids": ids, "labels": ([-100] * len(prompt) + completion)[:max_length]}
    out = tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = out["input_ids"][:max_length], out["assistant_masks"][:max_length]
    return {"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask)]}


def tokenize_text(example: dict, tokenizer, max_length: int) -> dict:
    ids = (tokenizer(example["text"], add_special_tokens=False).input_ids + [tokenizer.eos_token_id])[:max_length]
    return {"input_ids": ids, "labels": list(ids)}


def build_datasets(args: SFTArguments, training_args: SFTConfig, tokenizer) -> tuple:
    """Tokenized train/eval sets (TRL's processed format: input_ids + labels), replay mixed into train."""
    splits = [args.dataset_train_split] + ([args.dataset_test_split] if training_args.eval_strategy != "no" else [])
    raw = load_splits(
        args.dataset_name,
        splits,
        DIALOGUE_COLUMNS,
        "run `make data` first or set dataset_name",
        args.dataset_config,
        held_out=(args.eval_split_ratio, training_args.seed),
    )
    template, max_length = training_template(tokenizer), training_args.max_length
    with PartialState().local_main_process_first():
        done = {
            name: ds.map(
                tokenize_dialogue,
                remove_columns=ds.column_names,
                fn_kwargs={"tokenizer": tokenizer, "template": template, "max_length": max_length},
            )
            for name, ds in raw.items()
        }
    train = done[args.dataset_train_split]
    if not any(any(label != -100 for label in row) for row in train["labels"][:50]):
        raise RecipeError(
            f"no assistant tokens in {args.dataset_name}: every label is masked; check the chat template"
        )
    if args.replay_dataset and args.replay_fraction > 0:
        text = load_splits(args.replay_dataset, ["train"], [{"text"}], "set replay_dataset to a `text` dataset")[
            "train"
        ]
        count = min(len(text), round(len(train) * args.replay_fraction))
        picked = text.shuffle(seed=training_args.seed).select(range(count))
        with PartialState().local_main_process_first():
            replay = picked.map(
                tokenize_text,
                remove_columns=picked.column_names,
                fn_kwargs={"tokenizer": tokenizer, "max_length": max_length},
            )
        train = concatenate_datasets([train, replay]).shuffle(seed=training_args.seed)
    return train, done.get(args.dataset_test_split)


def print_samples(before: list, after: list, count: int, seed: int) -> list[dict]:
    samples = []
    for i in random.Random(seed).sample(range(len(after)), min(count, len(after))):
        samples.append(
            {
                "prompt": after[i].prompt,
                "base": before[i].completion.text if before else None,
                "sft": after[i].completion.text,
                "sft_gold": after[i].gold["total"],
            }
        )
        print(
            f"\nQ: {after[i].prompt}\n  base: {samples[-1]['base']!r}\n  sft:  {after[i].completion.text!r}"
            f"  (gold {after[i].gold['total']})"
        )
    return samples


def build_trainer(training_args, model_args, model, tokenizer, train_set, test_set, callbacks=()):
    """The stage's trainer; `make bench` times its steps (`callbacks` lets it watch them)."""
    return ResumableSFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=test_set,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=[CheckpointCompleted(), *callbacks],
    )


def train(args: SFTArguments, training_args: SFTConfig, model_args: ModelConfig, out: Path, world) -> dict:
    """Fine-tune into `out` (the staged output directory), judging the model before and after."""
    set_seed(training_args.seed)  # LoRA and score-head inits draw from the global RNG
    clock = Stopwatch()
    model, tokenizer = load_model(model_args, training_args)
    train_set, test_set = build_datasets(args, training_args, tokenizer)
    judging = load_judging(args)
    before, judged_before = evaluate_model(model, tokenizer, judging, args, training_args.seed)
    trainer = build_trainer(training_args, model_args, model, tokenizer, train_set, test_set)
    result = trainer.train(resume_from_checkpoint=last_checkpoint(out))
    ranks = rank_summary(trainer.model)
    trainer.save_model(str(out))
    trainer.save_state()
    after, judged_after = {}, []
    if trainer.accelerator.is_main_process:
        model = load_trained(AutoModelForCausalLM, out)
        if model_args.use_peft and args.merge_adapter:
            model = merge_saved_adapter(model, tokenizer, out)
        after, judged_after = evaluate_model(model, tokenizer, judging, args, training_args.seed)
    # TRL logs the token count every logging_steps; a run shorter than that has none
    tokens = next((e["num_tokens"] for e in reversed(trainer.state.log_history) if "num_tokens" in e), None)
    metrics = {
        "data": {
            "dataset": args.dataset_name,
            "train_rows": len(train_set),
            "eval_rows": len(test_set) if test_set is not None else 0,
            "replay_dataset": args.replay_dataset,
        },
        **world_record(world, out),
        "train_loss": round(result.training_loss, 4),
        "train_tokens": tokens,
        "tokens_per_second": tokens and round(tokens / result.metrics["train_runtime"]),
    }
    if test_set is not None:
        metrics["eval_loss"] = round(trainer.evaluate()["eval_loss"], 4)
    metrics.update({"base": before, "sft": after, "ranks": ranks, "wall_time_s": clock.seconds})
    metrics["samples"] = print_samples(judged_before, judged_after, args.num_samples_to_print, training_args.seed)
    write_json(out / "metrics.json", metrics)
    write_model_card(
        out,
        "SFT model",
        "Supervised fine-tuning of the base model on assistant demonstrations "
        "(rlhf-recipes stage 2). Prompt it with the tokenizer's chat template.",
        {**metrics, **{f"sft_{k}": v for k, v in after.items()}},
        base_model=model_args.model_name_or_path,
        datasets=[args.dataset_name, args.replay_dataset if args.replay_fraction > 0 else None],
    )
    return metrics


def main(argv: Sequence[str] | None = None) -> dict:
    parser = make_parser()
    args, training_args, model_args, output_args = parse(
        parser, apply_launch(parser, argv)
    )  # the accelerate config picks the hardware
    world = follow_world(args, args.dataset_name, **WORLD_OPTIONS)
    with staged_training_output(training_args, args, model_args, stage="sft", options=output_args) as out:
        metrics = train(args, training_args, model_args, out, world)
    PartialState().print(
        {
            "train_loss": metrics["train_loss"],
            "base_gold": metrics["base"].get("gold_score"),
            "sft_gold": metrics["sft"].get("gold_score"),
            "base_fact_accuracy": metrics["base"].get("fact_accuracy"),
            "sft_fact_accuracy": metrics["sft"].get("fact_accuracy"),
        }
    )
    return metrics


if __name__ == "__main__":
    cli(main)
