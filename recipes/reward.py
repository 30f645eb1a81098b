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

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import mean, pstdev

import torch
from accelerate import PartialState
from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed
from trl import ModelConfig, RewardConfig, ScriptArguments, TrlParser, get_peft_config

from rlhf_recipes.compat import CheckpointCompleted, ResumableRewardTrainer, on_this_process_only
from rlhf_recipes.training.chat import prepare_tokenizer
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
from rlhf_recipes.training.rewards import rewards, score_head
from rlhf_recipes.training.world_inputs import follow_world, world_record

PAIR_COLUMNS = [{"chosen", "rejected"}]


# which of the world's extras this stage follows (`auto` options): the bench resolves them the same way
WORLD_OPTIONS = dict(heldout_pairs="preferences")


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


def make_parser() -> TrlParser:
    return TrlParser((RewardArguments, RewardConfig, ModelConfig, TrainingOutputArguments))


def load_model(model_args: ModelConfig, training_args: RewardConfig):
    """A one-output sequence classifier from the SFT model, its score head freshly initialised, and the tokenizer."""
    name, fix = model_args.model_name_or_path, "run `make sft` first"
    kwargs = model_kwargs(model_args, training_args)
    model = load_pretrained(AutoModelForSequenceClassification, name, fix, num_labels=1, **kwargs)
    tokenizer = load_pretrained(AutoTokenizer, name, fix, **tokenizer_kwargs(model_args, training_args))
    tokenizer = prepare_tokenizer(tokenizer, model)
    head = score_head(model)
    torch.nn.init.normal_(head.weight, std=1 / math.sqrt(head.in_features + 1))
    if head.bias is not None:
        torch.nn.init.zeros_(head.bias)
    return model, tokenizer


def load_pairs(args: RewardArguments, training_args: RewardConfig) -> tuple:
    """The train and test comparisons (test carved from train when the dataset has none)."""
    data = load_splits(
        args.dataset_name,
        [args.dataset_train_split, args.dataset_test_split],
        PAIR_COLUMNS,
        "run `make compare` first or set dataset_name",
        args.dataset_config,
        held_out=(args.eval_split_ratio, training_args.seed),
    )
    return data[args.dataset_train_split], data[args.dataset_test_split]


def pair_accuracy(model, tokenizer, pairs) -> dict:
    """Accuracy (against the labels, and against gold where known) and margin, overall and by difference.

    Where the pairs record whether each label agrees with the gold labeler, the accuracy ceiling is read
    from them: a reward model that agrees with gold on every pair scores exactly that against noisy labels.
    """
    prompts = pairs["prompt"] if "prompt" in pairs.column_names else [None] * len(pairs)
    chosen = rewards(model, tokenizer, prompts, pairs["chosen"])
    rejected = rewards(model, tokenizer, prompts, pairs["rejected"])
    right = [c > r for c, r in zip(chosen, rejected)]
    result = {
        "pairs": len(pairs),
        "accuracy": round(mean(right), 3),
        "margin": round(mean(c - r for c, r in zip(chosen, rejected)), 3),
    }
    if "label_agrees_with_gold" in pairs.column_names:
        gold = [ok == agrees for ok, agrees in zip(right, pairs["label_agrees_with_gold"])]
        result["gold_agreement"] = round(mean(gold), 3)
        result["label_noise_ceiling"] = round(mean(pairs["label_agrees_with_gold"]), 3)
    if "difference" in pairs.column_names:
        groups = defaultdict(list)
        for ok, kind in zip(right, pairs["difference"]):
            groups[kind].append(ok)
        result["accuracy_by_difference"] = {k: round(mean(v), 3) for k, v in sorted(groups.items())}
    return result


def normalize(model, tokenizer, train) -> dict:
    """Scale the head so rewards of the SFT model's own answers have std 1; report their mean.

    A bias-free head (GPT-2's) cannot shift the mean; PPO's value baseline and advantage whitening
    absorb a constant offset, so only the scale matters there.
    """
    answers = list(train["chosen"]) + list(train["rejected"])
    prompts = (list(train["prompt"]) if "prompt" in train.column_names else [None] * len(train)) * 2
    values = rewards(model, tokenizer, prompts, answers)
    std = pstdev(values) or 1.0
    score_head(model).weight.data /= std
    return {"reward_std_before": round(std, 4), "reward_mean": round(mean(values) / std, 4)}


def build_trainer(training_args, model_args, model, tokenizer, train_set, test_set, callbacks=()):
    """The stage's trainer; `make bench` times its steps (`callbacks` lets it watch them)."""
    trainer = ResumableRewardTrainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=test_set,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=[CheckpointCompleted(), *callbacks],
    )
    if len(trainer.train_dataset) == 0:
        raise RecipeError(
            f"every training pair is longer than max_length={training_args.max_length} tokens; raise max_length"
        )
    return trainer


def train(args: RewardArguments, training_args: RewardConfig, model_args: ModelConfig, out, world) -> dict:
    """Train the reward model into `out` (the staged output directory), normalise it, measure its accuracy."""
    set_seed(training_args.seed)  # LoRA and score-head inits draw from the global RNG
    clock = Stopwatch()
    model, tokenizer = load_model(model_args, training_args)
    train_set, test_set = load_pairs(args, training_args)
    extra = (
        load_splits(args.heldout_pairs, ["test"], PAIR_COLUMNS, "set heldout_pairs, or none")["test"]
        if args.heldout_pairs
        else None
    )
    trainer = build_trainer(training_args, model_args, model, tokenizer, train_set, test_set)
    result = trainer.train(resume_from_checkpoint=last_checkpoint(out))
    metrics = {
        "data": {
            "dataset": args.dataset_name,
            "train_pairs": len(train_set),
            "eval_pairs": len(test_set),
            "heldout_pairs": args.heldout_pairs,
        },
        **world_record(world, out),
        "train_loss": round(result.training_loss, 4),
        "train_runtime_s": round(result.metrics["train_runtime"], 1),
        "ranks": rank_summary(trainer.model),
    }
    trainer.save_model(str(out))
    trainer.save_state()
    if trainer.accelerator.is_main_process:
        model = load_trained(AutoModelForSequenceClassification, out, num_labels=1)
        if model_args.use_peft:  # PPO needs the whole reward model
            model = merge_saved_adapter(model, tokenizer, out)
        if args.normalize_rewards:
            own = (
                train_set.filter(lambda r: r["source"] == "sft_samples")
                if "source" in train_set.column_names
                else train_set
            )
            own = own.select(range(min(len(own), args.max_normalization_samples)))
            metrics.update(normalize(model, tokenizer, own))
            with on_this_process_only():
                model.save_pretrained(out)
        metrics["heldout"] = pair_accuracy(model, tokenizer, test_set)
        if extra is not None:
            metrics["heldout_offline"] = pair_accuracy(model, tokenizer, extra)
    metrics["wall_time_s"] = clock.seconds
    write_json(out / "metrics.json", metrics)
    write_model_card(
        out,
        "Reward model",
        "A reward model (one-output sequence classifier) trained on ranked "
        "answer pairs (rlhf-recipes stage 3). Higher score: the answer people prefer.",
        {"heldout_accuracy": metrics.get("heldout", {}).get("accuracy"), **metrics},
        load_with="`AutoModelForSequenceClassification.from_pretrained` (one output: the reward, read at the last "
        "real token of prompt + answer in the chat template)",
        base_model=model_args.model_name_or_path,
        datasets=[args.dataset_name],
    )
    return metrics


def main(argv: Sequence[str] | None = None) -> dict:
    parser = make_parser()
    args, training_args, model_args, output_args = parse(
        parser, apply_launch(parser, argv)
    )  # the accelerate config picks the hardware
    if model_args.use_peft and model_args.lora_task_type != "SEQ_CLS":
        raise RecipeError(
            f"a reward model's LoRA needs lora_task_type: SEQ_CLS (got {model_args.lora_task_type}), "
            "so the score head is trained and saved with the adapter"
        )
    world = follow_world(args, args.dataset_name, **WORLD_OPTIONS)
    with staged_training_output(training_args, args, model_args, stage="reward", options=output_args) as out:
        metrics = train(args, training_args, model_args, out, world)
    PartialState().print(metrics)
    return metrics


if __name__ == "__main__":
    cli(main)
