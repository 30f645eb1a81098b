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

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from accelerate import PartialState
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
from trl import DPOConfig, DPOTrainer, ModelConfig, ScriptArguments, TrlParser, get_peft_config

from rlhf_recipes.compat import CheckpointCompleted
from rlhf_recipes.evaluation.judging import EvalArguments, evaluate_model, load_judging
from rlhf_recipes.training.chat import prepare_tokenizer
from rlhf_recipes.training.config import RecipeError, cli, parse
from rlhf_recipes.training.launch import apply_launch, rank_summary
from rlhf_recipes.training.loading import (
    HeldOutArguments,
    dataset_help,
    load_pretrained,
    load_splits,
    load_trained,
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

PAIR_COLUMNS = [{"chosen", "rejected"}]
DPO_COLUMNS = ("prompt", "chosen", "rejected")  # comparisons carry more (source, gold agreement): DPO reads these


# which of the world's extras this stage follows (`auto` options): the bench resolves them the same way
WORLD_OPTIONS = dict(eval_prompts="eval_prompts", world_file=WORLD_FILE)


@dataclass
class DPOArguments(ScriptArguments, EvalArguments, HeldOutArguments):
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": dataset_help("`chosen` and `rejected`, with an optional `prompt` (conversational or plain)")
        },
    )


def make_parser() -> TrlParser:
    return TrlParser((DPOArguments, DPOConfig, ModelConfig, TrainingOutputArguments))


def load_model(model_args: ModelConfig, config: DPOConfig) -> tuple:
    """The SFT model to train and its tokenizer (DPOTrainer copies the model as the frozen reference)."""
    name, fix = model_args.model_name_or_path, "run `make sft` first or set model_name_or_path"
    model = load_pretrained(AutoModelForCausalLM, name, fix, **model_kwargs(model_args, config))
    return model, prepare_tokenizer(
        load_pretrained(AutoTokenizer, name, fix, **tokenizer_kwargs(model_args, config)), model
    )


def load_pairs(args: DPOArguments, config: DPOConfig) -> tuple:
    data = load_splits(
        args.dataset_name,
        [args.dataset_train_split, args.dataset_test_split],
        PAIR_COLUMNS,
        "run `make compare` first or set dataset_name",
        args.dataset_config,
        held_out=(args.eval_split_ratio, config.seed),
    )
    train, test = data[args.dataset_train_split], data[args.dataset_test_split]
    keep = [c for c in DPO_COLUMNS if c in train.column_names]
    return train.select_columns(keep), test.select_columns(keep)


def pairs_seen(trainer) -> int:
    args = trainer.args
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * trainer.accelerator.num_processes
    return trainer.state.global_step * per_step


def build_trainer(config: DPOConfig, model_args: ModelConfig, model, tokenizer, train_set, test_set, callbacks=()):
    """The stage's trainer; `make bench` times its steps (`callbacks` lets it watch them)."""
    try:
        return DPOTrainer(
            model=model,
            args=config,
            train_dataset=train_set,
            eval_dataset=test_set,
            processing_class=tokenizer,
            peft_config=get_peft_config(model_args),
            callbacks=[CheckpointCompleted(), *callbacks],
        )
    except ValueError as e:
        raise RecipeError(f"DPO settings rejected: {e}") from e


def train(args: DPOArguments, config: DPOConfig, model_args: ModelConfig, out, world) -> dict:
    """Train the SFT model with DPO into `out` (the staged output directory); judge what it saves."""
    set_seed(config.seed)
    clock = Stopwatch()
    model, tokenizer = load_model(model_args, config)
    train_set, test_set = load_pairs(args, config)
    judging = load_judging(args)
    trainer = build_trainer(config, model_args, model, tokenizer, train_set, test_set)
    result = trainer.train(resume_from_checkpoint=last_checkpoint(out))
    heldout = trainer.evaluate()
    metrics = {
        "data": {"dataset": args.dataset_name, "train_pairs": len(train_set), "eval_pairs": len(test_set)},
        **world_record(world, out),
        "pairs_seen": pairs_seen(trainer),
        "updates": trainer.state.global_step,
        "train_loss": round(result.training_loss, 4),
        "heldout": {
            "accuracy": round(heldout["eval_rewards/accuracies"], 3),
            "margin": round(heldout["eval_rewards/margins"], 3),
            "loss": round(heldout["eval_loss"], 4),
        },
        "ranks": rank_summary(trainer.model),
        "config": {"beta": config.beta, "loss_type": config.loss_type},
    }
    trainer.save_model(str(out))
    trainer.save_state()
    if judging and PartialState().is_main_process:
        metrics["dpo"], _ = evaluate_model(
            load_trained(AutoModelForCausalLM, out), tokenizer, judging, args, config.seed
        )
    metrics["wall_time_s"] = clock.seconds
    write_json(out / "metrics.json", {**metrics, "log_history": trainer.state.log_history})
    write_model_card(
        out,
        "DPO policy",
        "The SFT model trained with Direct Preference Optimization on ranked answer pairs, the SFT model as "
        "reference (rlhf-recipes). Prompt it with the chat template.",
        {"heldout_accuracy": metrics["heldout"]["accuracy"], **metrics},
        base_model=model_args.model_name_or_path,
        datasets=[args.dataset_name],
    )
    return metrics


def main(argv: Sequence[str] | None = None) -> dict:
    parser = make_parser()
    args, config, model_args, output_args = parse(parser, apply_launch(parser, argv))
    world = follow_world(args, args.dataset_name, **WORLD_OPTIONS)
    with staged_training_output(config, args, model_args, stage="dpo", options=output_args) as out:
        metrics = train(args, config, model_args, out, world)
    PartialState().print({k: v for k, v in metrics.items() if k != "ranks"})
    return metrics


if __name__ == "__main__":
    cli(main)
