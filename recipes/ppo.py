"""Stage 4: reinforcement learning from human feedback with TRL's PPOTrainer (`make ppo`).

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/ppo.py --config recipes/tiny/ppo.yaml

The policy and the frozen reference start from the SFT model (`sft_model_path`); the reward model and
the value model start from the reward model (`reward_model_path`). PPOTrainer lives in
`trl.experimental.ppo` and was removed in TRL 1.13, hence the pin at 1.12.0. Prompts come from any
dataset with a `prompt` column (conversational or plain), rendered with the SFT model's chat template
and left-padded. The implementation details are set in the YAML, in plain sight: stop at EOS, the
missing-EOS penalty, the KL coefficient to the reference, response length, temperature, whitening,
PPO epochs and minibatches. The reward model must share the policy's tokenizer: PPO hands it the
policy's token ids, so a different vocabulary would be scored as noise, and the script refuses it.

Memory: four models (policy, frozen reference, reward model, value model to train; with `use_peft` the
reference is the policy with its adapter off). RLOO and GRPO (recipes/rloo.py, grpo.py) drop the value
model and hold three; DPO (recipes/dpo.py) holds two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from accelerate import PartialState
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, set_seed
from trl import ModelConfig, ScriptArguments, TrlParser, get_peft_config
from trl.experimental.ppo import PPOConfig

from rlhf_recipes.compat import CheckpointCompleted, ResumablePPOTrainer, save_ppo_policy
from rlhf_recipes.evaluation.generation import context_length
from rlhf_recipes.evaluation.judging import EvalArguments, evaluate_model, load_judging
from rlhf_recipes.training.chat import prepare_tokenizer
from rlhf_recipes.training.config import RecipeError, cli, parse
from rlhf_recipes.training.launch import apply_launch, launched_with, rank_summary
from rlhf_recipes.training.loading import load_pretrained, load_trained
from rlhf_recipes.training.outputs import (
    HELDOUT_PROMPTS,
    Stopwatch,
    TrainingOutputArguments,
    last_checkpoint,
    staged_training_output,
    write_json,
    write_jsonl,
    write_model_card,
)
from rlhf_recipes.training.prompts import PromptArguments, prompt_splits
from rlhf_recipes.training.world_inputs import WORLD_FILE, follow_world, world_record

WATCHED = {
    "objective/rlhf_reward": "rlhf_reward",
    "objective/scores": "score",
    "objective/kl": "kl",
    "objective/entropy": "entropy",
    "policy/clipfrac_avg": "clip_fraction",
    "loss/value_avg": "value_loss",
    "val/ratio": "ratio",
    "val/num_eos_tokens": "eos_tokens",
    "eps": "episodes_per_second",
}
# what later stages (the report) read from this stage's metrics.json rather than repeat in their own YAML
SHARED_SETTINGS = ("temperature", "missing_eos_penalty", "kl_coef", "response_length")


# which of the world's extras this stage follows (`auto` options): the bench resolves them the same way
WORLD_OPTIONS = dict(eval_prompts="eval_prompts", world_file=WORLD_FILE)


@dataclass
class PPOArguments(PromptArguments, ScriptArguments, EvalArguments):  # PromptArguments first: its dataset help
    """The prompts, the dataset options, the gold-labeler judging after training, and snapshots."""

    snapshot_steps: int = field(
        default=0,
        metadata={
            "help": "Save the policy alone every this many updates to output_dir/snapshots/update-<n> (the "
            "report's over-optimisation curve evaluates them); 0: none."
        },
    )


def make_parser() -> TrlParser:
    return TrlParser((PPOArguments, PPOConfig, ModelConfig, TrainingOutputArguments))


def refuse_unused_model_fields(model_args: ModelConfig) -> None:
    """PPO loads its four models from sft_model_path and reward_model_path: ModelConfig fields that would
    name or quantize another model are refused rather than silently ignored."""
    unused = {
        "model_name_or_path": model_args.model_name_or_path,
        "model_revision": model_args.model_revision,
        "load_in_4bit": model_args.load_in_4bit,
        "load_in_8bit": model_args.load_in_8bit,
    }
    for name, value in unused.items():
        if value not in (None, False, "main"):
            raise RecipeError(
                f"PPO does not use {name} ({value!r}): it loads sft_model_path and reward_model_path "
                "as saved (quantize in SFT and the reward model instead); remove it from the config"
            )


def load_models(training_args: PPOConfig, model_args: ModelConfig):
    sft_fix, rm_fix = "run `make sft` first or set sft_model_path", "run `make reward` first or set reward_model_path"
    kwargs = {"dtype": model_args.dtype, "attn_implementation": model_args.attn_implementation}
    tokenizer = load_pretrained(AutoTokenizer, training_args.sft_model_path, sft_fix, padding_side="left")
    policy = load_pretrained(AutoModelForCausalLM, training_args.sft_model_path, sft_fix, **kwargs)
    prepare_tokenizer(tokenizer, policy)
    reward_tokenizer = load_pretrained(AutoTokenizer, training_args.reward_model_path, rm_fix)
    if reward_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise RecipeError(
            f"reward model {training_args.reward_model_path} uses a different tokenizer than the policy "
            f"{training_args.sft_model_path}, and PPO scores the policy's token ids as they are; train the reward "
            "model from the SFT model (make reward) or from a model with the policy's tokenizer"
        )
    reward, value = (
        load_pretrained(
            AutoModelForSequenceClassification,
            training_args.reward_model_path,
            rm_fix,
            num_labels=1,
            **kwargs,
        )
        for _ in range(2)
    )
    # with LoRA the reference is the policy with its adapter switched off
    ref = (
        None
        if model_args.use_peft
        else load_pretrained(AutoModelForCausalLM, training_args.sft_model_path, sft_fix, **kwargs)
    )
    for model in (ref, reward, value):
        if model is not None:
            model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, policy, ref, reward, value


def summarize_log(log_history: list[dict]) -> dict:
    """First and last values of what users watch in PPO: reward up, KL small and positive, ratio near 1."""
    steps = [e for e in log_history if "objective/kl" in e]
    if not steps:
        return {}
    return {
        name: {"first": round(steps[0][key], 4), "last": round(steps[-1][key], 4)}
        for key, name in WATCHED.items()
        if key in steps[-1]
    }


def build_trainer(
    training_args: PPOConfig,
    model_args: ModelConfig,
    models: tuple,
    train_set,
    held_set,
    callbacks=(),
    snapshot_steps: int = 0,
):
    """The stage's trainer from `load_models`' five; `make bench` times its updates (through `callbacks`)."""
    tokenizer, policy, ref, reward, value = models
    try:
        return ResumablePPOTrainer(
            args=training_args,
            processing_class=tokenizer,
            model=policy,
            ref_model=ref,
            reward_model=reward,
            value_model=value,
            train_dataset=train_set,
            eval_dataset=held_set,
            peft_config=get_peft_config(model_args),
            callbacks=[CheckpointCompleted(), *callbacks],
            snapshot_steps=snapshot_steps,
        )
    except (ValueError, AssertionError) as e:  # batch sizes that do not divide, and the like
        raise RecipeError(f"PPO settings rejected: {e}") from e


def train(args: PPOArguments, training_args: PPOConfig, model_args: ModelConfig, out, world) -> dict:
    """Run PPO into `out` (the staged output directory) and judge the policy it saves."""
    set_seed(training_args.seed)  # LoRA and score-head inits draw from the global RNG
    clock = Stopwatch()
    tokenizer, policy, ref, reward, value = load_models(training_args, model_args)
    prompts, held = prompt_splits(args, tokenizer, context_length(policy), training_args.response_length)
    train_set, held_set = prompts.select_columns(["input_ids"]), held.select_columns(["input_ids"])
    judging = load_judging(args)
    models = (tokenizer, policy, ref, reward, value)
    trainer = build_trainer(training_args, model_args, models, train_set, held_set, snapshot_steps=args.snapshot_steps)
    trainer.train(resume_from_checkpoint=last_checkpoint(out))
    metrics = {
        "data": {
            "dataset": args.dataset_name,
            "train_prompts": len(train_set),
            "heldout_prompts": len(held),
            "eval_prompts": args.eval_prompts,
        },
        **world_record(world, out),
        "episodes": trainer.state.episode,
        "updates": trainer.state.global_step,
        **summarize_log(trainer.state.log_history),
        "ranks": rank_summary(trainer.accelerator.unwrap_model(trainer.model).policy),
        "config": {key: getattr(training_args, key) for key in SHARED_SETTINGS},
    }
    save_ppo_policy(trainer, tokenizer, out)
    write_jsonl(out / HELDOUT_PROMPTS, held.select_columns(["prompt"]).to_list())  # the report's, on a user's data
    if judging and PartialState().is_main_process:
        policy = load_trained(AutoModelForCausalLM, out)
        metrics["ppo"], _ = evaluate_model(policy, tokenizer, judging, args, training_args.seed)
    metrics["wall_time_s"] = clock.seconds
    write_json(out / "metrics.json", {**metrics, "log_history": trainer.state.log_history})
    write_model_card(
        out,
        "PPO policy",
        "The SFT model trained with PPO against the reward model, with a KL "
        "penalty to the SFT model (rlhf-recipes stage 4). Prompt it with the chat template.",
        metrics,
        base_model=training_args.sft_model_path,
        datasets=[args.dataset_name],
    )
    return metrics


def main(argv: Sequence[str] | None = None) -> dict:
    parser = make_parser()
    args, training_args, model_args, output_args = parse(
        parser, apply_launch(parser, argv)
    )  # the accelerate config picks the hardware
    refuse_unused_model_fields(model_args)
    if model_args.use_peft and PartialState().num_processes > 1:  # TRL 1.12 cannot find the adapter inside DDP
        raise RecipeError(
            "PPO with use_peft runs on one process only (TRL 1.12); launch it with "
            "accelerate_configs/cpu.yaml or single_gpu.yaml, or drop use_peft to use several processes"
        )
    if training_args.save_strategy != "no" and launched_with("DEEPSPEED"):
        raise RecipeError(
            "PPO checkpoints are not supported under DeepSpeed (its engine keeps its own format); "
            "set save_strategy: no, or launch without DeepSpeed to checkpoint and resume"
        )
    world = follow_world(args, args.dataset_name, **WORLD_OPTIONS)
    with staged_training_output(training_args, args, model_args, stage="ppo", options=output_args) as out:
        metrics = train(args, training_args, model_args, out, world)
    PartialState().print(metrics)
    return metrics


if __name__ == "__main__":
    cli(main)
