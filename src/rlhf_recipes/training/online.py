"""What RLOO and GRPO share: the SFT policy, the reward model as a reward function, the missing-EOS penalty.

Both TRL trainers sample several answers per prompt and use the group's other answers as the baseline,
so they need no value model: three models in memory (policy, reference, reward model) where PPO holds
four. They decode each answer and score the text with the reward model through its own tokenizer and
chat template. That template closes every answer with EOS, so an answer cut at the token limit would
look finished; PPO's missing-EOS penalty therefore comes back as a second reward function that reads
the completion's token ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from accelerate import PartialState
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, set_seed
from trl import ModelConfig, ScriptArguments, get_peft_config

from ..compat import CheckpointCompleted, generate_with_kv_cache
from ..evaluation.generation import context_length
from ..evaluation.judging import EvalArguments, evaluate_model, load_judging
from .chat import prepare_tokenizer
from .config import RecipeError
from .launch import rank_summary
from .loading import load_pretrained, load_trained, model_kwargs
from .outputs import HELDOUT_PROMPTS, Stopwatch, last_checkpoint, write_json, write_jsonl, write_model_card
from .prompts import PromptArguments, prompt_splits
from .world_inputs import world_record

WATCHED = {
    "reward": "reward",
    "rewards/missing_eos/mean": "missing_eos_penalty",
    "kl": "kl",
    "entropy": "entropy",
    "completions/mean_length": "completion_length",
    "completions/clipped_ratio": "truncated_share",
}
SFT_FIX = "run `make sft` first or set model_name_or_path"
RM_FIX = "run `make reward` first or set reward_model_path"


@dataclass
class OnlineArguments(PromptArguments, ScriptArguments, EvalArguments):
    reward_model_path: str = field(
        default="outputs/tiny/reward", metadata={"help": "The reward model (a one-output sequence classifier)."}
    )
    missing_eos_penalty: float = field(
        default=1.0,
        metadata={
            "help": "Subtracted from the reward of an answer that never reaches EOS (PPO's missing_eos_penalty, "
            "here a reward function over the completion's token ids); 0: off."
        },
    )


def missing_eos(penalty: float, eos_token_id: int):
    """A reward function: -penalty for an answer whose last token is not EOS (cut at the length limit), else 0."""

    def missing_eos(completion_ids: list[list[int]], **_) -> list[float]:
        return [0.0 if ids and ids[-1] == eos_token_id else -penalty for ids in completion_ids]

    return missing_eos


def load_reward_model(args: OnlineArguments, model_args: ModelConfig, conversational: bool):
    """The reward model and its own tokenizer: the trainers score decoded text, so it may differ from the policy's."""
    kwargs = {"dtype": model_args.dtype, "attn_implementation": model_args.attn_implementation}
    model = load_pretrained(AutoModelForSequenceClassification, args.reward_model_path, RM_FIX, num_labels=1, **kwargs)
    tokenizer = prepare_tokenizer(load_pretrained(AutoTokenizer, args.reward_model_path, RM_FIX), model)
    if conversational and not tokenizer.chat_template:
        raise RecipeError(
            f"reward model {args.reward_model_path} has no chat template, and the prompts are conversations; "
            "save one with its tokenizer (make reward does) or use plain-text prompts"
        )
    model.config.pad_token_id = tokenizer.pad_token_id  # the score is read at the last non-pad token
    return model, tokenizer


def summarize_log(log_history: list[dict], reward_model) -> dict:
    """First and last values of what users watch: reward up, KL small and positive, answers ending."""
    steps = [e for e in log_history if "reward" in e]
    # TRL logs each reward function's mean under its name: the model's folder name, or the function's name
    watched = {**WATCHED, f"rewards/{Path(reward_model.config._name_or_path).name}/mean": "reward_model_score"}
    if not steps:
        return {}
    return {
        name: {"first": round(steps[0][k], 4), "last": round(steps[-1][k], 4)}
        for k, name in watched.items()
        if k in steps[-1]
    }


def completions_sampled(trainer) -> int:
    """Answers the run generated: each step trains on a batch of them, reused num_iterations times."""
    args = trainer.args
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * trainer.accelerator.num_processes
    return trainer.state.global_step * per_step // (args.num_iterations * args.gradient_accumulation_steps)


def load_online(args: OnlineArguments, config, model_args: ModelConfig) -> dict:
    """The policy and its tokenizer, the prompts (train, held out) and the reward model with its tokenizer."""
    name = model_args.model_name_or_path
    policy = load_pretrained(AutoModelForCausalLM, name, SFT_FIX, **model_kwargs(model_args, config))
    tokenizer = prepare_tokenizer(load_pretrained(AutoTokenizer, name, SFT_FIX, padding_side="left"), policy)
    prompts, held = prompt_splits(args, tokenizer, context_length(policy), config.max_completion_length)
    reward, reward_tokenizer = load_reward_model(args, model_args, isinstance(prompts[0]["prompt"], list))
    return {
        "policy": policy,
        "tokenizer": tokenizer,
        "prompts": prompts,
        "held": held,
        "reward": reward,
        "reward_tokenizer": reward_tokenizer,
    }


def build_online_trainer(trainer_class, stage: str, args, config, model_args: ModelConfig, loaded: dict, callbacks=()):
    """The stage's trainer (RLOOTrainer, GRPOTrainer); `make bench` times its steps through `callbacks`."""
    penalty = missing_eos(args.missing_eos_penalty, loaded["tokenizer"].eos_token_id)
    try:
        trainer = trainer_class(
            model=loaded["policy"],
            reward_funcs=[loaded["reward"], penalty],
            args=config,
            train_dataset=loaded["prompts"].select_columns(["prompt"]),
            processing_class=loaded["tokenizer"],
            reward_processing_classes=[loaded["reward_tokenizer"], None],
            peft_config=get_peft_config(model_args),
            callbacks=[CheckpointCompleted(), *callbacks],
        )
    except ValueError as e:  # batch sizes that do not divide by num_generations, and the like
        raise RecipeError(f"{stage} settings rejected: {e}") from e
    generate_with_kv_cache(trainer.accelerator.unwrap_model(trainer.model), config)
    return trainer


def train_online(trainer_class, stage: str, args: OnlineArguments, config, model_args: ModelConfig, out, world):
    """Train the SFT policy with `trainer_class` (RLOOTrainer, GRPOTrainer) into `out`; judge what it saves."""
    set_seed(config.seed)
    clock = Stopwatch()
    loaded = load_online(args, config, model_args)
    tokenizer, prompts, held, reward = loaded["tokenizer"], loaded["prompts"], loaded["held"], loaded["reward"]
    judging = load_judging(args)
    trainer = build_online_trainer(trainer_class, stage, args, config, model_args, loaded)
    trainer.train(resume_from_checkpoint=last_checkpoint(out))
    trainer.save_model(str(out))
    trainer.save_state()
    write_jsonl(out / HELDOUT_PROMPTS, held.select_columns(["prompt"]).to_list())
    metrics = {
        "data": {"dataset": args.dataset_name, "train_prompts": len(prompts), "heldout_prompts": len(held)},
        **world_record(world, out),
        "completions": completions_sampled(trainer),
        "updates": trainer.state.global_step,
        **summarize_log(trainer.state.log_history, reward),
        "ranks": rank_summary(trainer.model),
        "config": {
            "temperature": config.temperature,
            "missing_eos_penalty": args.missing_eos_penalty,
            "beta": config.beta,
            "max_completion_length": config.max_completion_length,
        },
    }
    if judging and PartialState().is_main_process:
        metrics[stage], _ = evaluate_model(
            load_trained(AutoModelForCausalLM, out), tokenizer, judging, args, config.seed
        )
    metrics["wall_time_s"] = clock.seconds
    write_json(out / "metrics.json", {**metrics, "log_history": trainer.state.log_history})
    write_model_card(
        out,
        f"{stage.upper()} policy",
        f"The SFT model trained with {stage.upper()} against the reward model, with a KL penalty (beta) to the "
        "SFT model (rlhf-recipes). Prompt it with the chat template.",
        metrics,
        base_model=model_args.model_name_or_path,
        datasets=[args.dataset_name],
    )
    return metrics
