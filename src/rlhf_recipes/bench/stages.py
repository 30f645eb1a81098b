"""`make bench`: each stage's own trainer timed against a plain loop; PPO's update split into its phases.

The trainer is the stage's own, reached through the stage runner's declared interface: `stage_of(script)`
gives the training script's Stage, `from_argv` configures it from its YAML, `prepare` loads its model and
data and `trainer` builds it. Nothing here imports a script. Each stage runs in its own process (the
script again, with `--stage`), so its peak RSS is its own.
"""

from __future__ import annotations

import copy
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from accelerate import PartialState

from ..stages.command import SCRIPTS
from ..stages.runner import stage_of
from ..training.config import RecipeError
from ..training.prompts import render
from ..training.recipes import moved_settings, outputs_root
from .plain import PlainLoop, causal_lm_loss, dpo_loss, group_baseline_loss, pairwise_reward_loss, real_tokens
from .report import write_bench
from .timing import Round, StepClock, interleave, matmul_peak, peak_rss_mib

STAGES = ("pretrain", "sft", "reward", "dpo", "rloo", "grpo", "ppo")
ONLINE = ("rloo", "grpo")
SHAPES = {"recipe": None, "gpt2-124m": {"n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 50257}}


def configured(stage: str, argv: list[str]):
    """The stage as its training script declares it, configured from `argv`, its model and data loaded."""
    found, _ = stage_of(Path("recipes") / f"{SCRIPTS.get(stage, stage)}.py").from_argv(argv)
    found.prepare()
    return found


def recipe_args(bench, stage: str, work: Path, models: dict) -> list[str]:
    """The stage's YAML as `make <stage>` runs it, minus saving and evaluation, on the bench's models (its inputs
    under other roots if the bench names them)."""
    roots = {key: getattr(bench, key) for key in ("data_root", "outputs_root") if getattr(bench, key)}
    argv = ["--config", f"recipes/{bench.model}/{stage}.yaml", *moved_settings(bench.model, stage, roots)]
    argv += ["--output_dir", str(work / stage)]
    argv += ["--save_strategy", "no", "--report_to", "none", "--bf16", str(bench.bf16).lower()]
    if stage != "ppo":
        steps = bench.updates_per_round if stage in ONLINE else bench.steps_per_round
        argv += ["--eval_strategy", "no", "--max_steps", str(steps), "--disable_tqdm", "true"]
    if stage not in (*ONLINE, "ppo"):
        argv += ["--gradient_accumulation_steps", "1"]  # one batch a step, as the plain loop takes them
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


def build_shape(bench, work: Path) -> dict:
    """Random models of the asked shape, saved with the recipe's tokenizer: stand-ins for SFT and RM."""
    if bench.shape == "recipe":
        return {}
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(Path(bench.outputs_root or outputs_root(bench.model)) / "sft")
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


def offline_stage(bench, stage: str, argv: list[str]) -> dict:
    """One supervised stage: its trainer against the plain loop, interleaved, on the trainer's own rows."""
    recipe, clock = configured(stage, argv), StepClock()
    model, tokenizer, config = recipe.model, recipe.tokenizer, recipe.config
    if stage == "pretrain" and bench.shape != "recipe":
        model.resize_token_embeddings(SHAPES[bench.shape]["vocab_size"])
    plain_model = copy.deepcopy(model)
    trainer = recipe.trainer(callbacks=[clock])
    plain_model.to(trainer.accelerator.device)  # before DPO's loss copies it as the reference
    pad = tokenizer.pad_token_id
    if stage in ("pretrain", "sft"):
        loss, columns = causal_lm_loss(pad), {"input_ids": 1}
    elif stage == "reward":
        loss, columns = pairwise_reward_loss(pad), {"chosen_ids": 1, "rejected_ids": 1}
    else:  # the policy runs the prompt twice (with each answer); the reference too, without gradients
        loss = dpo_loss(plain_model, pad, config.beta)
        columns = {"prompt_ids": 2, "chosen_ids": 1, "rejected_ids": 1}
    train_rows = trainer.train_dataset.flatten_indices()
    rows = train_rows.select_columns(sorted({"labels", *columns} & set(train_rows.column_names))).to_list()
    batch = config.per_device_train_batch_size
    settings = {"learning_rate": config.learning_rate, "max_grad_norm": config.max_grad_norm}
    order = list(itertools.islice(trainer.get_train_dataloader().batch_sampler, bench.steps_per_round))
    optimizer = recipe.optimizer(plain_model)
    plain = PlainLoop(plain_model, rows, batch, loss, bench.bf16, **settings, optimizer=optimizer, batch_order=order)
    sides = {"recipe": lambda: time_trainer(trainer, clock, bench.steps_per_round)}
    sides["plain"] = lambda: plain(bench.steps_per_round)
    trained = model.num_parameters()
    return {
        "kind": "offline",
        "tokens_per_step": real_tokens(rows, columns) * batch,
        "flops_per_token": 6 * trained + (2 * trained if stage == "dpo" else 0),  # DPO's reference: a forward pass
        "parameters": trained,
        "rounds": interleave(sides, bench.rounds),
    }


def online_stage(bench, stage: str, argv: list[str]) -> dict:
    """RLOO or GRPO: the recipe's trainer against the plain loop of `group_baseline_loss`, in answers sampled."""
    recipe, clock = configured(stage, argv), StepClock()
    tokenizer, config, plain_model = recipe.tokenizer, recipe.config, copy.deepcopy(recipe.policy)
    trainer = recipe.trainer(callbacks=[clock])
    plain_model.to(trainer.accelerator.device)  # before the loss copies it as the reference
    rows = [
        {"prompt_ids": tokenizer(render(p, tokenizer), add_special_tokens=False).input_ids}
        for p in recipe.prompts["prompt"]
    ]
    penalty = recipe.args.missing_eos_penalty
    loss = group_baseline_loss(plain_model, recipe.reward, tokenizer, config, penalty, stage == "rloo")
    prompts_per_step = config.per_device_train_batch_size // config.num_generations
    settings = {"learning_rate": config.learning_rate, "max_grad_norm": config.max_grad_norm}
    plain = PlainLoop(plain_model, rows, prompts_per_step, loss, bench.bf16, **settings)
    steps = bench.updates_per_round
    timed = interleave(
        {"recipe": lambda: time_trainer(trainer, clock, steps), "plain": lambda: plain(steps)}, bench.rounds
    )
    return {"kind": "online", "answers_per_step": config.per_device_train_batch_size, "rounds": timed}


def ppo_stage(bench, argv: list[str], work: Path) -> dict:
    """The recipe's PPO update, split into generation, scoring and training by the trainer's own timers.

    Against TRL 1.12's PPOTrainer with its defaults: `make ppo-parity`, where TRL 1.12 is installed."""
    ours, clock = configured("ppo", argv), StepClock()
    trainer = ours.trainer(callbacks=[clock])

    def run() -> Round:
        before, start = dict(trainer.phase_seconds), time.perf_counter()
        trainer.train(updates=bench.updates_per_round)
        seconds = time.perf_counter() - start
        phases = {name: trainer.phase_seconds[name] - before.get(name, 0.0) for name in trainer.phase_seconds}
        phases["other"] = seconds - sum(phases.values())
        return Round(seconds, len(clock.ends), phases)

    return {
        "kind": "ppo",
        "episodes_per_step": trainer.batch_size,
        "rounds": interleave({"recipe": run}, bench.rounds),
    }


def run_stage(bench) -> None:
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


def run_all(bench, argv: list[str], script: str) -> dict:
    """Every asked stage in a process of its own (`script` again, with `--stage`), then the report."""
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
    dtypes = (torch.float32, torch.bfloat16) if bench.bf16 else (torch.float32,)
    peak = max(matmul_peak(dtype, device.type) for dtype in dtypes)
    for stage in bench.stages.split(","):
        print(f"bench: {stage} ...", flush=True)
        if subprocess.run([sys.executable, script, *argv, "--stage", stage]).returncode != 0:
            raise RecipeError(f"the bench of {stage} failed (its error is above); `make all` makes its inputs")
    return write_bench(bench, peak, device)
