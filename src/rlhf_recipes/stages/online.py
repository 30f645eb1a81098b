"""What the online RL stages share (PPO, RLOO, GRPO): prompts, the log users watch, the saved policy, its judging.

Every online stage holds out the same prompts (`prompt_splits`), saves them for the report, and has the
gold labeler judge the policy it saves. RLOO and GRPO also share how they score: both TRL trainers
sample several answers per prompt and use the group's other answers as the baseline, so they need no
value model (three models in memory where PPO holds four). They decode each answer and score the text
with the reward model through its own tokenizer and chat template. That template closes every answer
with EOS, so an answer cut at the token limit would look finished; PPO's missing-EOS penalty therefore
comes back as a second reward function that reads the completion's token ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from trl import ScriptArguments, get_peft_config

from ..evaluation.judging import EvalArguments
from ..training.chat import prepare_tokenizer
from ..training.config import RecipeError
from ..training.context import context_length
from ..training.loading import load_pretrained
from ..training.models import load_model, load_saved
from ..training.outputs import HELDOUT_PROMPTS, write_jsonl
from ..training.prompts import PromptArguments, prompt_splits
from ..training.recipes import resolved_config
from ..training.trainers import SnapshotArguments
from .runner import Stage

SFT_FIX = "run `make sft` first or set model_name_or_path"
RM_FIX = "run `make reward` first or set reward_model_path"


class RLStage(Stage):
    """An online RL stage: a policy sampled on prompts, its log summarised, the saved policy judged."""

    world_options: ClassVar[dict] = dict(eval_prompts="eval_prompts", world_file="world.json")
    watched: ClassVar[dict[str, str]]  # the trainer's log keys users watch -> their names in metrics.json
    completion_length: ClassVar[str]  # the config field bounding an answer's tokens

    def load_models(self) -> None:
        """Set self.policy, self.tokenizer (left padding) and the other models the method needs."""
        raise NotImplementedError

    def prepare(self) -> None:
        self.load_models()
        length = getattr(self.config, self.completion_length)
        self.prompts, self.held = prompt_splits(self.args, self.tokenizer, context_length(self.policy), length)
        self.data |= {"train_prompts": len(self.prompts), "heldout_prompts": len(self.held)}
        self.data["eval_prompts"] = self.args.eval_prompts

    def measure(self, trainer, result) -> dict:
        return {"updates": trainer.state.global_step, **summarize_log(trainer.state.log_history, self.watched)}

    def save(self, trainer, out: Path) -> None:
        super().save(trainer, out)
        write_jsonl(
            out / HELDOUT_PROMPTS, self.held.select_columns(["prompt"]).to_list()
        )  # the report's, on your data

    def evaluate(self, out: Path) -> dict:
        if not self.judging:
            return {}
        policy = load_saved(AutoModelForCausalLM, out, self.tokenizer)
        return {self.name: self.judge(policy)[0]}


def summarize_log(log_history: list[dict], watched: dict[str, str]) -> dict:
    """First and last logged value of each watched key: reward up, KL small and positive, answers ending."""
    first_key = next(iter(watched))
    steps = [e for e in log_history if first_key in e]
    if not steps:
        return {}
    return {
        name: {"first": round(steps[0][k], 4), "last": round(steps[-1][k], 4)}
        for k, name in watched.items()
        if k in steps[-1]
    }


def refuse_unused_model_fields(model_args, method: str, loads: str) -> None:
    """A stage that loads its models from its own paths refuses ModelConfig fields that would name or quantize
    another model, rather than ignore them silently."""
    unused = {
        "model_name_or_path": model_args.model_name_or_path,
        "model_revision": model_args.model_revision,
        "load_in_4bit": model_args.load_in_4bit,
        "load_in_8bit": model_args.load_in_8bit,
    }
    for name, value in unused.items():
        if value not in (None, False, "main"):
            raise RecipeError(
                f"{method} does not use {name} ({value!r}): it loads {loads} as saved (quantize in SFT and the "
                "reward model instead); remove it from the config"
            )


@dataclass
class GroupArguments(PromptArguments, ScriptArguments, EvalArguments, SnapshotArguments):
    """RLOO's and GRPO's own settings, beside TRL's config: the method, the reward model, the EOS penalty."""

    method: str | None = field(default=None, metadata={"help": "rloo or grpo: the trainer that runs."})
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


class GroupStage(RLStage):
    """RLOO or GRPO: the group of answers of a prompt is each answer's baseline; no value model."""

    trainer_class: ClassVar[type]
    watched = {
        "reward": "reward", "rewards/missing_eos/mean": "missing_eos_penalty", "kl": "kl", "entropy": "entropy",
        "completions/mean_length": "completion_length", "completions/clipped_ratio": "truncated_share",
    }  # fmt: skip
    completion_length = "max_completion_length"

    def load_models(self) -> None:
        """The policy from the SFT model; the reward model with its own tokenizer (it scores decoded text)."""
        self.policy, self.tokenizer = load_model(AutoModelForCausalLM, self.model_args, self.config, SFT_FIX)
        self.tokenizer.padding_side = "left"
        path, kwargs = self.args.reward_model_path, {"dtype": self.model_args.dtype}
        kwargs["attn_implementation"] = self.model_args.attn_implementation
        self.reward = load_pretrained(AutoModelForSequenceClassification, path, RM_FIX, num_labels=1, **kwargs)
        self.reward_tokenizer = prepare_tokenizer(load_pretrained(AutoTokenizer, path, RM_FIX), self.reward)
        self.reward.config.pad_token_id = (
            self.reward_tokenizer.pad_token_id
        )  # the score is read at the last real token
        # TRL logs each reward function's mean under its name: the model's folder name, or the function's name
        self.watched = {**self.watched, f"rewards/{Path(path).name}/mean": "reward_model_score"}

    def prepare(self) -> None:
        super().prepare()
        if isinstance(self.prompts[0]["prompt"], list) and not self.reward_tokenizer.chat_template:
            raise RecipeError(
                f"reward model {self.args.reward_model_path} has no chat template, and the prompts are conversations; "
                "save one with its tokenizer (make reward does) or use plain-text prompts"
            )

    def trainer(self, callbacks=()):
        penalty = missing_eos(self.args.missing_eos_penalty, self.tokenizer.eos_token_id)
        try:
            return self.trainer_class(
                model=self.policy,
                reward_funcs=[self.reward, penalty],
                args=self.config,
                train_dataset=self.prompts.select_columns(["prompt"]),
                processing_class=self.tokenizer,
                reward_processing_classes=[self.reward_tokenizer, None],
                peft_config=get_peft_config(self.model_args),
                callbacks=list(callbacks),
            )
        except ValueError as e:  # batch sizes that do not divide by num_generations, and the like
            raise RecipeError(f"{self.name} settings rejected: {e}") from e

    def measure(self, trainer, result) -> dict:
        config = self.config
        settings = {"temperature": config.temperature, "missing_eos_penalty": self.args.missing_eos_penalty}
        settings |= {"beta": config.beta, "max_completion_length": config.max_completion_length}
        return {"completions": completions_sampled(trainer), **super().measure(trainer, result), "config": settings}


def missing_eos(penalty: float, eos_token_id: int):
    """A reward function: -penalty for an answer whose last token is not EOS (cut at the length limit), else 0."""

    def missing_eos(completion_ids: list[list[int]], **_) -> list[float]:
        return [0.0 if ids and ids[-1] == eos_token_id else -penalty for ids in completion_ids]

    return missing_eos


def completions_sampled(trainer) -> int:
    """Answers the run generated: each step trains on a batch of them, reused num_iterations times."""
    args = trainer.args
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * trainer.accelerator.num_processes
    return trainer.state.global_step * per_step // (args.num_iterations * args.gradient_accumulation_steps)


def method_of(argv: list[str], methods: dict) -> str:
    """The `method` a group-RL run asks for, on the command line or in its YAML: it decides the trainer's config."""
    given = [a.split("=", 1)[1] for a in argv if a.startswith("--method=")]
    if "--method" in argv[:-1]:
        method = argv[argv.index("--method") + 1]
    elif given:
        method = given[-1]
    else:
        config = argv[argv.index("--config") + 1] if "--config" in argv[:-1] else None
        method = resolved_config(Path(config)).get("method") if config else None
    if method not in methods:
        raise RecipeError(
            f"method is {method!r}; set method: {' or '.join(methods)} in the YAML or with --method (for its options: "
            f"--method {next(iter(methods))} --help)"
        )
    return method
