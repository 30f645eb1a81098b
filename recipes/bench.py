"""How fast each stage trains against what the hardware allows (`make bench`).

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/bench.py --model tiny

For pretraining, SFT, the reward model and DPO: the recipe's own trainer (built by the stage's
`build_trainer` from the stage's YAML, data and model) against a plain PyTorch loop on a copy of the same
model, the same rows, batch size and dtype, in interleaved rounds (A B A B ...) so a noisy machine slows
both alike; the figure is recipe/plain in tokens per second, median and range over the rounds, with
MFU against a matmul peak measured in the same run. RLOO and GRPO: the same, against a plain loop that
samples, scores and trains as they do, in answers per second. For PPO: the recipe's update against TRL 1.12's
`PPOTrainer` with its defaults (bf16, activation checkpointing, its garbage collection) on the same
models and batch, interleaved likewise, each update split into generation, scoring, training, gc and
the rest. Each stage runs in its own process, so its peak RSS is its own. Needs the stage inputs of
`make all`; `--shape gpt2-124m` swaps in random GPT-2-124M-sized models built from their config.
Writes outputs/bench/bench.json, bench.md and bench.png.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import PartialState
from trl import TrlParser

from rlhf_recipes.bench.plain import (
    PlainLoop,
    causal_lm_loss,
    dpo_loss,
    group_baseline_loss,
    pairwise_reward_loss,
    real_tokens,
)
from rlhf_recipes.bench.report import write_bench
from rlhf_recipes.bench.timing import Round, StepClock, interleave, matmul_peak, peak_rss_mib
from rlhf_recipes.training.config import RecipeError, cli, parse
from rlhf_recipes.training.launch import apply_launch
from rlhf_recipes.training.world_inputs import follow_world

STAGES = ("pretrain", "sft", "reward", "dpo", "rloo", "grpo", "ppo")
ONLINE = ("rloo", "grpo")
SHAPES = {"recipe": None, "gpt2-124m": {"n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 50257}}


@dataclass
class BenchArguments:
    model: str = field(default="tiny", metadata={"help": "Recipe folder under recipes/ whose stage YAMLs are timed."})
    stages: str = field(default=",".join(STAGES), metadata={"help": f"Comma list of stages, of {', '.join(STAGES)}."})
    shape: str = field(
        default="recipe",
        metadata={
            "help": "recipe: the recipe's own models (run `make all` first); gpt2-124m: random GPT-2-124M-sized ones."
        },
    )
    rounds: int = field(default=5, metadata={"help": "Timed rounds per side, after one untimed warm-up round."})
    steps_per_round: int = field(default=8, metadata={"help": "Optimizer steps per round and side."})
    updates_per_round: int = field(default=3, metadata={"help": "PPO, RLOO, GRPO updates per round and side."})
    bf16: bool = field(default=False, metadata={"help": "Train in bf16 autocast (recipes and plain loops alike)."})
    output_dir: str = field(default="outputs/bench", metadata={"help": "Where bench.json, bench.md, bench.png go."})
    stage: str | None = field(default=None, metadata={"help": "Internal: time this one stage in this process."})


def make_parser() -> TrlParser:
    return TrlParser((BenchArguments,))


def recipe_args(bench: BenchArguments, stage: str, work: Path, models: dict) -> list[str]:
    """The stage's YAML as `make <stage>` runs it, minus saving and evaluation, on the bench's models."""
    argv = ["--config", f"recipes/{bench.model}/{stage}.yaml", "--output_dir", str(work / stage)]
    argv += ["--save_strategy", "no", "--report_to", "none", "--bf16", str(bench.bf16).lower()]
    if stage != "ppo":
        steps = bench.updates_per_round if stage in ONLINE else bench.steps_per_round
        argv += ["--eval_strategy", "no", "--max_steps", str(steps), "--disable_tqdm", "true"]
    if models:
        argv += {
            "pretrain": [f"--{k}={v}" for k, v in SHAPES[bench.shape].items() if k != "vocab_size"],
            "sft": ["--model_name_or_path", models["policy"]],
            "reward": ["--model_name_or_path", models["policy"]],
            "dpo": ["--model_name_or_path", models["policy"]],
            "rloo": ["--model_name_or_path", models["policy"], "--reward_model_path", models["reward"]],
            "grpo": ["--model_name_or_path", models["policy"], "--reward_model_path", models["reward"]],
            "ppo": ["--sft_model_path", models["policy"], "--reward_model_path", models["reward"]],
        }[stage]
    return argv


def build_shape(bench: BenchArguments, work: Path) -> dict:
    """Random models of the asked shape, saved with the recipe's tokenizer: stand-ins for SFT and RM."""
    if bench.shape == "recipe":
        return {}
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(f"outputs/{bench.model}/sft")
    config = GPT2Config(
        **SHAPES[bench.shape],
        n_positions=1024,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    paths = {"policy": work / "models" / "policy", "reward": work / "models" / "reward"}
    for model, path in (
        (GPT2LMHeadModel(config), paths["policy"]),
        (GPT2ForSequenceClassification(config), paths["reward"]),
    ):
        model.config.num_labels = 1
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    return {k: str(v) for k, v in paths.items()}


def time_trainer(trainer, clock: StepClock, steps: int) -> Round:
    trainer.args.max_steps = steps
    trainer.train()
    return Round(clock.ends[-1] - clock.began, len(clock.ends))


def offline_stage(bench: BenchArguments, stage: str, argv: list[str]) -> dict:
    """One supervised stage: its trainer against the plain loop, interleaved, on the trainer's own rows."""
    from transformers import AutoTokenizer

    import dpo
    import pretrain
    import reward
    import sft

    module = {"pretrain": pretrain, "sft": sft, "reward": reward, "dpo": dpo}[stage]
    parser = module.make_parser()
    configs = parse(parser, apply_launch(parser, argv))
    args, training_args = configs[0], configs[1]
    follow_world(args, args.dataset_name, **module.WORLD_OPTIONS)
    clock = StepClock()
    if stage == "pretrain":
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name_or_path)
        splits = pretrain.packed_splits(args, tokenizer, training_args.seed)
        model = pretrain.build_model(args, tokenizer)
        if bench.shape != "recipe":
            model.resize_token_embeddings(SHAPES[bench.shape]["vocab_size"])
        plain_model = copy.deepcopy(model)
        trainer = pretrain.build_trainer(args, training_args, model, tokenizer, splits, callbacks=[clock])
        loss, columns = causal_lm_loss(tokenizer.pad_token_id), {"input_ids": 1}
    else:
        model_args = configs[2]
        if stage == "sft":
            model, tokenizer = sft.load_model(model_args, training_args)
            train_set, _ = sft.build_datasets(args, training_args, tokenizer)
        elif stage == "reward":
            model, tokenizer = reward.load_model(model_args, training_args)
            train_set, _ = reward.load_pairs(args, training_args)
        else:
            model, tokenizer = dpo.load_model(model_args, training_args)
            train_set, _ = dpo.load_pairs(args, training_args)
        plain_model = copy.deepcopy(model)
        trainer = module.build_trainer(training_args, model_args, model, tokenizer, train_set, None, callbacks=[clock])
        plain_model.to(trainer.accelerator.device)  # before DPO's loss copies it as the reference
        pad = tokenizer.pad_token_id
        if stage == "sft":
            loss, columns = causal_lm_loss(pad), {"input_ids": 1}
        elif stage == "reward":
            loss, columns = pairwise_reward_loss(pad), {"chosen_ids": 1, "rejected_ids": 1}
        else:  # the policy runs the prompt twice (with each answer); the reference too, without gradients
            loss = dpo_loss(plain_model, pad, training_args.beta)
            columns = {"prompt_ids": 2, "chosen_ids": 1, "rejected_ids": 1}
    train_rows = trainer.train_dataset.flatten_indices()
    rows = train_rows.select_columns(sorted({"labels", *columns} & set(train_rows.column_names))).to_list()
    plain = PlainLoop(
        plain_model.to(trainer.accelerator.device),
        rows,
        training_args.per_device_train_batch_size,
        training_args.learning_rate,
        loss,
        bench.bf16,
    )
    timed = interleave(
        {
            "recipe": lambda: time_trainer(trainer, clock, bench.steps_per_round),
            "plain": lambda: plain(bench.steps_per_round),
        },
        bench.rounds,
    )
    tokens_per_step = real_tokens(rows, columns) * training_args.per_device_train_batch_size
    trained = model.num_parameters()
    flops_per_token = 6 * trained + (2 * trained if stage == "dpo" else 0)  # DPO's reference: a forward pass
    return {
        "kind": "offline",
        "tokens_per_step": tokens_per_step,
        "flops_per_token": flops_per_token,
        "parameters": trained,
        "rounds": timed,
    }


def online_stage(bench: BenchArguments, stage: str, argv: list[str]) -> dict:
    """RLOO or GRPO: the recipe's trainer against the plain loop of `group_baseline_loss`, in answers sampled."""
    from trl import GRPOTrainer, RLOOTrainer

    import grpo
    import rloo
    from rlhf_recipes.training.online import build_online_trainer, load_online
    from rlhf_recipes.training.prompts import render

    module, trainer_class = {"rloo": (rloo, RLOOTrainer), "grpo": (grpo, GRPOTrainer)}[stage]
    parser = module.make_parser()
    args, config, model_args, _ = parse(parser, apply_launch(parser, argv))
    follow_world(args, args.dataset_name, **module.WORLD_OPTIONS)
    loaded = load_online(args, config, model_args)
    tokenizer, plain_model = loaded["tokenizer"], copy.deepcopy(loaded["policy"])
    clock = StepClock()
    trainer = build_online_trainer(trainer_class, stage, args, config, model_args, loaded, callbacks=[clock])
    plain_model.to(trainer.accelerator.device)  # before the loss copies it as the reference
    rows = [
        {"prompt_ids": tokenizer(render(p, tokenizer), add_special_tokens=False).input_ids}
        for p in loaded["prompts"]["prompt"]
    ]
    loss = group_baseline_loss(
        plain_model, loaded["reward"], tokenizer, config, args.missing_eos_penalty, stage == "rloo"
    )
    prompts_per_step = config.per_device_train_batch_size // config.num_generations
    plain = PlainLoop(plain_model, rows, prompts_per_step, config.learning_rate, loss, bench.bf16)
    steps = bench.updates_per_round
    timed = interleave(
        {"recipe": lambda: time_trainer(trainer, clock, steps), "plain": lambda: plain(steps)}, bench.rounds
    )
    return {"kind": "online", "answers_per_step": config.per_device_train_batch_size, "rounds": timed}


def ppo_stage(bench: BenchArguments, argv: list[str], work: Path) -> dict:
    """The recipe's PPO update against TRL 1.12's PPOTrainer with its defaults, interleaved, split in phases."""
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    import ppo
    from rlhf_recipes.bench.phases import ppo_phases
    from rlhf_recipes.evaluation.generation import context_length
    from rlhf_recipes.training.prompts import prompt_splits

    parser = ppo.make_parser()
    args, config, model_args, _ = parse(parser, apply_launch(parser, argv))
    follow_world(args, args.dataset_name, **ppo.WORLD_OPTIONS)
    ours = ppo.load_models(config, model_args)
    tokenizer, policy = ours[0], ours[1]
    prompts, _ = prompt_splits(args, tokenizer, context_length(policy), config.response_length)
    prompts = prompts.select_columns(["input_ids"])
    clocks = {"recipe": StepClock(), "trl_defaults": StepClock()}
    recipe = ppo.build_trainer(config, model_args, ours, prompts, None, callbacks=[clocks["recipe"]])
    same_task = {  # what defines the task and the batch; every engineering setting stays TRL's default
        k: getattr(config, k)
        for k in (
            "per_device_train_batch_size",
            "response_length",
            "stop_token",
            "temperature",
            "missing_eos_penalty",
            "kl_coef",
            "total_episodes",
            "seed",
        )
    }
    same_task["use_cpu"] = config.use_cpu or not torch.cuda.is_available()
    defaults = PPOConfig(output_dir=str(work / "ppo_trl_defaults"), report_to="none", save_strategy="no", **same_task)
    theirs = ppo.load_models(config, model_args)
    baseline = PPOTrainer(
        args=defaults,
        processing_class=theirs[0],
        model=theirs[1],
        ref_model=theirs[2],
        reward_model=theirs[3],
        value_model=theirs[4],
        train_dataset=prompts,
        callbacks=[clocks["trl_defaults"]],
    )

    def updates(trainer, clock):
        def run() -> Round:
            trainer.args.num_total_batches = bench.updates_per_round
            start = time.perf_counter()  # the whole call: TRL collects garbage after the last update's callbacks
            with ppo_phases(trainer) as phases:
                trainer.train()
            seconds = time.perf_counter() - start
            phases = dict(phases)
            phases["other"] = seconds - sum(phases.values())
            return Round(seconds, len(clock.ends), phases)

        return run

    timed = interleave(
        {name: updates(t, clocks[name]) for name, t in (("recipe", recipe), ("trl_defaults", baseline))}, bench.rounds
    )
    settings = {
        k: getattr(defaults, k)
        for k in ("bf16", "gradient_checkpointing", "local_rollout_forward_batch_size", "num_ppo_epochs")
    }
    return {
        "kind": "ppo",
        "episodes_per_step": config.per_device_train_batch_size,
        "trl_defaults": settings,
        "rounds": timed,
    }


def run_stage(bench: BenchArguments) -> None:
    """Time one stage in this process and leave its figures in `<output_dir>/stages/<stage>.json`."""
    torch.manual_seed(0)
    out = Path(bench.output_dir)
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        work = Path(scratch)
        models = build_shape(bench, work)
        argv = recipe_args(bench, bench.stage, work, models)
        if bench.stage == "ppo":
            result = ppo_stage(bench, argv, work)
        elif bench.stage in ONLINE:
            result = online_stage(bench, bench.stage, argv)
        else:
            result = offline_stage(bench, bench.stage, argv)
    result["rounds"] = {side: [vars(r) for r in rounds] for side, rounds in result["rounds"].items()}
    result["peak_rss_mib"] = round(peak_rss_mib())
    (out / "stages").mkdir(parents=True, exist_ok=True)
    (out / "stages" / f"{bench.stage}.json").write_text(json.dumps(result, indent=2))


def main(argv: Sequence[str] | None = None) -> dict:
    parser = make_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    (bench,) = parse(parser, apply_launch(parser, argv))
    unknown = set(bench.stages.split(",")) - set(STAGES)
    if unknown or bench.shape not in SHAPES:
        raise RecipeError(
            f"unknown stage or shape ({sorted(unknown) or bench.shape}); "
            f"stages: {', '.join(STAGES)}; shapes: {', '.join(SHAPES)}"
        )
    Path(bench.output_dir).mkdir(parents=True, exist_ok=True)
    if bench.stage:
        run_stage(bench)
        return {}
    device = PartialState().device
    # autocast runs some matmuls in fp32; where bf16 is slower (a CPU without bf16 units) fp32 is the roof
    peak = max(
        matmul_peak(dtype, device.type)
        for dtype in ((torch.float32, torch.bfloat16) if bench.bf16 else (torch.float32,))
    )
    for stage in bench.stages.split(","):
        print(f"bench: {stage} ...", flush=True)
        if subprocess.run([sys.executable, __file__, *argv, "--stage", stage]).returncode != 0:
            raise RecipeError(f"the bench of {stage} failed (its error is above); `make all` makes its inputs")
    return write_bench(bench, peak, device)


if __name__ == "__main__":
    cli(main)
