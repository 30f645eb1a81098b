"""`make gpu-check`: what only a GPU can show, run and measured in at most 8 minutes.

SFT and PPO on `HW=single_gpu` in bf16, QLoRA (a 4-bit bitsandbytes base) SFT, SFT under ZeRO-2 on one GPU,
and the bench's GPU row, on the tiny recipe. The base model, tokenizer, world and reward model they need
are made first, smaller than `make all` makes them; QLoRA and ZeRO-2 leave the judged answers to SFT.
Each step is the stage command `make` would run (`stage_command`), its data and outputs moved under the
check's folder (`moved_settings`), with a timeout of its own; the timeouts add up to less than the budget,
and a step never outlives what is left of it. A step whose inputs failed is skipped. `gpu_check.json`
records the GPU, each step's command, status and figures (time, tokens/s, loss, peak GPU memory); `logs/`
each step's output. Without a GPU: one line, exit 0.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from ..stages.command import stage_command
from ..training.errors import RecipeError
from ..training.outputs import write_json
from ..training.recipes import moved_settings

MODEL = "tiny"
BUDGET_S = 480  # 8 minutes from the check's process start; its steps' timeouts leave it 30 s of its own
MIN_STEP_S = 10  # a step with less of the budget left is not started: it could not even import torch
SHORT = ("--save_strategy", "no", "--report_to", "none", "--bf16", "true")


@dataclass
class GpuCheckArguments:
    output_dir: str = field(
        default="outputs/gpu-check", metadata={"help": "Where gpu_check.json, logs/ and the steps' outputs go."}
    )


@dataclass(frozen=True)
class Step:
    """One stage command of the check: `stage` on `hw` with `args` over the recipe's YAML, within `timeout_s`."""

    name: str
    what: str
    stage: str
    hw: str
    timeout_s: int
    args: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()  # the steps whose outputs it reads
    procs: int | None = None


def steps(out: Path) -> list[Step]:
    """The check, in order: its inputs (world, tokenizer, base, SFT and reward models), then the GPU paths."""
    models, data = out / MODEL, out / "data"
    qlora = ("--use_peft", "true", "--load_in_4bit", "true", "--bnb_4bit_quant_type", "nf4", "--dtype", "bfloat16")
    qlora += ("--lora_r", "16", "--lora_alpha", "32", "--lora_target_modules", "all-linear", "--eval_prompts", "none")
    pairs = ("--dataset_name", str(data / "preferences"), "--heldout_pairs", "none")
    bench = ("--bf16", "true", "--stages", "sft,ppo", "--rounds", "2", "--updates_per_round", "2")
    bench += ("--data_root", str(data), "--outputs_root", str(models), "--output_dir", str(out / "bench"))
    return [
        Step("data", "the embedded world, smaller", "data", "cpu", 30, ("--pretrain_docs", "3000")),
        Step("tokenizer", "the BPE tokenizer", "tokenizer", "cpu", 25, needs=("data",)),
        Step("pretrain", "the base model, bf16", "pretrain", "single_gpu", 50, ("--max_steps", "300", *SHORT),
             needs=("tokenizer",)),
        Step("sft", "SFT, bf16", "sft", "single_gpu", 45, ("--max_steps", "150", *SHORT), needs=("pretrain",)),
        Step("reward", "the reward model on the world's offline pairs, bf16", "reward", "single_gpu", 40,
             (*pairs, "--max_steps", "100", *SHORT), needs=("sft",)),
        Step("ppo", "PPO, bf16", "ppo", "single_gpu", 60, ("--total_episodes", "256", "--snapshot_steps", "0", *SHORT),
             needs=("sft", "reward")),
        Step("sft_qlora", "QLoRA SFT: a 4-bit nf4 base (bitsandbytes) and LoRA adapters, bf16", "sft", "single_gpu",
             45, (*qlora, "--max_steps", "100", "--output_dir", str(models / "sft-qlora"), *SHORT),
             needs=("pretrain",)),
        Step("sft_zero2", "SFT under DeepSpeed ZeRO-2 on one GPU, bf16", "sft", "deepspeed_zero2", 55,
             ("--max_steps", "100", "--eval_prompts", "none", "--output_dir", str(models / "sft-zero2"), *SHORT),
             needs=("pretrain",), procs=1),
        Step("bench", "the bench's GPU row: SFT and PPO against plain loops, bf16", "bench", "single_gpu", 90, bench,
             needs=("pretrain", "sft", "reward")),
    ]  # fmt: skip


def command(step: Step, out: Path) -> list[str]:
    """The step's stage command: `make <stage> HW=<hw>`'s, every path of its YAML moved under `out`."""
    roots = {"data_root": str(out / "data"), "outputs_root": str(out / MODEL)}
    moved = moved_settings(MODEL, step.stage, roots) if step.stage != "bench" else []
    return stage_command(MODEL, step.stage, step.hw, step.procs, [*moved, *step.args])


def last_value(argv: list[str], option: str) -> str:
    """The value the last `option` in `argv` gives: the one the script keeps."""
    return argv[len(argv) - argv[::-1].index(option)]


FIGURES = {  # metrics.json key (a nested one as key.subkey) -> its name in gpu_check.json
    "wall_time_s": "stage_wall_s",
    "tokens_per_second": "tokens_per_s",
    "episodes_per_second.last": "episodes_per_s",
    "train_loss": "loss",
    "value_loss.last": "value_loss",
    "peak_gpu_memory_mib": "peak_gpu_memory_mib",
}


def figures(metrics: dict) -> dict:
    """What a finished stage measured, by the names above; what it did not measure is left out."""
    found = {}
    for key, name in FIGURES.items():
        value = metrics
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            found[name] = value
    return found


def bench_figures(report: dict) -> dict:
    """The bench's GPU row: per stage, the recipe's speed, its ratio to the plain loop and MFU."""
    return {"machine": report["machine"], "matmul_peak_gflops": report["matmul_peak_gflops"], "rows": report["stages"]}


def measured(step: Step, out: Path) -> dict:
    if step.stage == "bench":
        return bench_figures(json.loads((out / "bench" / "bench.json").read_text()))
    return figures(json.loads((Path(last_value(command(step, out), "--output_dir")) / "metrics.json").read_text()))


def run_step(step: Step, out: Path, deadline: float) -> dict:
    """Run one step within its timeout and what is left of the budget; its record for gpu_check.json."""
    argv = command(step, out)
    timeout_s = min(step.timeout_s, deadline - time.monotonic())
    record = {"name": step.name, "what": step.what, "hw": step.hw, "command": shlex.join(argv)}
    record["timeout_s"] = round(timeout_s)
    log = out / "logs" / f"{step.name}.log"
    start = time.monotonic()
    with log.open("w") as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            status = "passed" if process.wait(timeout=max(timeout_s, 0)) == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the launcher and its ranks: they hold the GPU
            process.wait()
            status = "timed out"
    record |= {"status": status, "wall_s": round(time.monotonic() - start, 1)}
    if status == "passed":
        record["figures"] = measured(step, out)
    else:
        record["error"] = error_line(log)
    print(f"gpu-check: {step.name}: {status} in {record['wall_s']} s", flush=True)
    return record


def skipped(step: Step, reason: str) -> dict:
    print(f"gpu-check: {step.name}: skipped, {reason}", flush=True)
    return {"name": step.name, "what": step.what, "hw": step.hw, "status": "skipped", "error": reason}


def error_line(log: Path) -> str:
    """The step's error: its last line naming one (a progress bar may follow it), else its last line."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [""])[-1]


def machine() -> dict | None:
    """The CUDA GPU and the torch that drives it, or None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    return {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda}


def run_check(args: GpuCheckArguments) -> dict | None:
    """Every step, in order, within the budget; gpu_check.json. None (and one line) without a GPU."""
    found = machine()
    if found is None:
        print("gpu-check: no CUDA GPU here (torch.cuda.is_available() is False); nothing to run")
        return None
    out = Path(args.output_dir)
    for made in ("data", MODEL, "bench", "logs"):  # a fresh world and fresh models each time
        shutil.rmtree(out / made, ignore_errors=True)
    (out / "logs").mkdir(parents=True)
    started = psutil.Process().create_time()  # the budget counts the interpreter's start and imports too
    deadline, records = time.monotonic() + BUDGET_S - (time.time() - started), {}
    for step in steps(out):
        if any(records[need]["status"] != "passed" for need in step.needs):
            records[step.name] = skipped(step, "a step it needs did not pass")
        elif deadline - time.monotonic() < MIN_STEP_S:
            records[step.name] = skipped(step, "the budget ran out")
        else:
            records[step.name] = run_step(step, out, deadline)
    report = {
        **found,
        "date": datetime.date.today().isoformat(),
        "budget_s": BUDGET_S,
        "wall_s": round(time.time() - started, 1),
        "steps": list(records.values()),
    }
    write_json(out / "gpu_check.json", report)
    failed = [r["name"] for r in records.values() if r["status"] != "passed"]
    if failed:
        raise RecipeError(
            f"gpu-check: {', '.join(failed)} did not pass; each one's status and error are in "
            f"{out / 'gpu_check.json'}, its whole output in {out / 'logs'}"
        )
    return report
