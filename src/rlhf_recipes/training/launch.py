"""What `accelerate launch` decided (CPU or GPU, how many ranks, DeepSpeed or FSDP), applied to a stage.

Every stage's `main()` calls `apply_launch` before parsing, so the recipe YAMLs hold hyperparameters only
and the accelerate config alone picks the hardware.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import psutil
import torch
from accelerate import PartialState
from accelerate.utils import gather_object

from ..compat import cpu_ops_built_without_debug_info, no_deepspeed_inference_op_on_cpu
from .config import RecipeError
from .cores import share_now


def on_cpu_by_launch() -> bool:
    """The accelerate config chose the CPU: `use_cpu: true` (cpu.yaml), or several ranks and no GPU (multi_cpu)."""
    if os.environ.get("ACCELERATE_USE_CPU", "false").lower() == "true":
        return True
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def launched_with(engine: str) -> bool:
    """Whether `accelerate launch` set up DeepSpeed or FSDP for this process."""
    return os.environ.get(f"ACCELERATE_USE_{engine}", "false").lower() == "true"


def accelerate_command() -> list[str] | None:
    """The `accelerate launch ...` command that started this process, or None if accelerate did not.

    accelerate sets ACCELERATE_MIXED_PRECISION for every process it launches, but passes the script only its
    own arguments: the launch options (the config file, the process count) are read off the launcher,
    this process's parent on one machine (torchrun's ranks included).
    """
    if "ACCELERATE_MIXED_PRECISION" not in os.environ:
        return None
    try:
        launcher = psutil.Process().parent().cmdline()
    except (psutil.Error, AttributeError):  # no parent left, or one this user may not read
        launcher = []
    for i, arg in enumerate(launcher[:-1]):
        if Path(arg).name == "accelerate" and launcher[i + 1] == "launch":
            return ["accelerate", *launcher[i + 1 :]]
    return ["accelerate", "launch", *sys.argv]  # a launcher out of sight (another node): the options are unknown


SECRET_OPTIONS = ("--hub_token",)
RECORDED_COMMAND = "RLHF_RECIPES_COMMAND"  # set by `make all`, which runs a stage in its own process: its command


def command_line() -> str:
    """The command that started this run, runnable in a shell, with secrets blanked: what its outputs record."""
    recorded = os.environ.get(RECORDED_COMMAND)
    argv = shlex.split(recorded) if recorded else accelerate_command() or ["python", *sys.argv]
    shown = []
    for arg in argv:
        option, _, value = arg.partition("=")
        if shown and shown[-1] in SECRET_OPTIONS:
            arg = "<redacted>"
        elif option in SECRET_OPTIONS and value:
            arg = f"{option}=<redacted>"
        shown.append(arg)
    return shlex.join(shown)


def apply_launch(parser, argv: Sequence[str] | None) -> list[str]:
    """Apply what the accelerate config decided about the CPU to the trainer's arguments.

    Recipes hold hyperparameters only, so the launch decides the device. On the CPU the trainer needs
    `use_cpu` (else a bf16 recipe is refused, and several ranks each think they are alone and train on
    the whole dataset) and the gloo backend. DeepSpeed on CPU ranks keeps its engine and needs only gloo.
    Returns the arguments to parse: `argv` (or the command line) plus what the launch implies.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if launched_with("FSDP") and not torch.cuda.is_available():
        raise RecipeError(
            "FSDP needs GPUs here (on CPU ranks it did not train correctly); without a GPU use "
            "HW=multi_cpu (DDP) or HW=deepspeed_zero3 (sharded)"
        )
    deepspeed = launched_with("DEEPSPEED")
    if deepspeed:
        no_deepspeed_inference_op_on_cpu()  # ~1 min of g++ for an op training never calls (compat.py)
        cpu_ops_built_without_debug_info()  # CPU Adam in 2 x 28 s of g++ instead of 2 x 44 s
    if not on_cpu_by_launch() or (deepspeed and torch.cuda.is_available()):
        return argv
    fields = set().union(*(getattr(t, "__dataclass_fields__", {}) for t in parser.dataclass_types))
    extra = []
    if not deepspeed:
        os.environ["ACCELERATE_USE_CPU"] = "true"
        extra += ["--use_cpu", "true"] if "use_cpu" in fields and "--use_cpu" not in argv else []
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        share_now()  # each rank its share of the cores (torchrun gives each 1 thread)
        PartialState(cpu=not deepspeed, backend="gloo")
        extra += ["--ddp_backend", "gloo"] if "ddp_backend" in fields and "--ddp_backend" not in argv else []
    return argv + extra


def weights_checksum(model) -> float | None:
    """Sum of every weight in float64; None where ZeRO-3 leaves each rank only a shard."""
    params = list(model.parameters())
    if any(hasattr(p, "ds_id") for p in params):
        return None
    return float(sum(p.detach().double().abs().sum().item() for p in params))


def rank_summary(model) -> dict:
    """How many processes trained, and each one's weights checksum: data parallel ranks must agree."""
    return {
        "processes": PartialState().num_processes,
        "weights_checksum_by_rank": gather_object([weights_checksum(model)]),
    }


def peak_gpu_memory() -> dict:
    """This process's peak GPU memory held by tensors, for metrics.json (`make gpu-check` reads it); none on CPU."""
    if not torch.cuda.is_available():
        return {}
    return {"peak_gpu_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20)}
