"""Every file in accelerate_configs/ is read by accelerate itself, through the command `make` builds."""

import os
import shlex
import subprocess
import sys

import pytest
import yaml
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import FullyShardedDataParallelPlugin, patch_environment
from accelerate.utils.launch import prepare_multi_gpu_env
from transformers import TrainingArguments
from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

from conftest import ROOT
from rlhf_recipes.stages.command import command_of

CONFIGS = sorted(p.stem for p in (ROOT / "accelerate_configs").glob("*.yaml"))
# what each target must turn into: (launcher, processes, machines)
EXPECTED = {
    "cpu": ("simple", 1, 1),
    "single_gpu": ("simple", 1, 1),
    "multi_cpu": ("torchrun", 2, 1),
    "multi_gpu": ("torchrun", 8, 1),
    "fsdp": ("fsdp", 8, 1),
    "deepspeed_zero2": ("deepspeed", 8, 1),
    "deepspeed_zero3": ("deepspeed", 8, 1),
    "deepspeed_zero3_offload": ("deepspeed", 8, 1),
    "multi_node": ("deepspeed", 16, 2),
}


def make_command(*targets: str) -> list[str]:
    """The accelerate launch command `make` runs: the line `make -n` prints names the stage, and the one
    function that builds every stage's command (`rlhf_recipes.stages.command`) turns it into the launch."""
    out = subprocess.run(["make", "-n", *targets], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    argv = shlex.split(next(line for line in out.splitlines() if "rlhf_recipes.stages.command" in line))
    here = os.getcwd()
    os.chdir(ROOT)  # the command names recipes/ and accelerate_configs/ from the repository root, as make does
    try:
        return command_of(argv[argv.index("rlhf_recipes.stages.command") + 1 :])
    finally:
        os.chdir(here)


def validated(*targets: str):
    """accelerate's own parsing and validation of the command, config file included."""
    argv = make_command(*targets)
    args = launch_command_parser().parse_args(argv[argv.index("launch") + 1 :])
    return _validate_launch_command(args)[0]


def launcher(args) -> str:
    if args.use_deepspeed:
        return "deepspeed"
    if args.use_fsdp:
        return "fsdp"
    return "torchrun" if args.multi_gpu else "simple"


def test_every_target_has_a_config_and_a_header():
    assert set(CONFIGS) == set(EXPECTED)
    for name in CONFIGS:
        text = (ROOT / "accelerate_configs" / f"{name}.yaml").read_text()
        header = text.split("compute_environment")[0]
        assert header.startswith("# ") and "make <stage> HW=" in header, name


@pytest.mark.parametrize("name", CONFIGS)
def test_make_builds_the_launch_command_and_accelerate_accepts_it(name):
    assert make_command("sft", f"HW={name}")[1:] == [
        "launch",
        "--quiet",
        "--config_file",
        f"accelerate_configs/{name}.yaml",
        "recipes/sft.py",
        "--config",
        "recipes/tiny/sft.yaml",
    ]
    args = validated("sft", f"HW={name}")
    assert (launcher(args), args.num_processes, args.num_machines) == EXPECTED[name]


def test_procs_overrides_the_process_count():
    argv = make_command("reward", "HW=deepspeed_zero3", "PROCS=2", "ARGS=--max_steps 3")
    assert argv[1:] == [
        "launch",
        "--quiet",
        "--config_file",
        "accelerate_configs/deepspeed_zero3.yaml",
        "--num_processes",
        "2",
        "recipes/reward.py",
        "--config",
        "recipes/tiny/reward.yaml",
        "--max_steps",
        "3",
    ]
    assert validated("reward", "HW=deepspeed_zero3", "PROCS=2").num_processes == 2


@pytest.mark.parametrize("name", [c for c in CONFIGS if EXPECTED[c][0] == "deepspeed"])
def test_deepspeed_files_pass_deepspeeds_own_validation(name):
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    args = validated("sft", f"HW={name}")
    config = HfTrainerDeepSpeedConfig(str(ROOT / args.deepspeed_config_file))
    config.trainer_config_process(
        TrainingArguments(output_dir="unused", per_device_train_batch_size=4, bf16=True, use_cpu=True)
    )
    assert config.config["bf16"]["enabled"] is True  # precision comes from the recipe, not the hardware file
    zero = DeepSpeedZeroConfig(**config.config["zero_optimization"])
    assert zero.stage == (2 if name.endswith("zero2") else 3)
    assert (zero.offload_param is not None) == name.endswith("offload")


def test_fsdp_config_becomes_an_fsdp2_plugin():
    args = validated("sft", "HW=fsdp")
    with patch_environment(**prepare_multi_gpu_env(args)):
        plugin = FullyShardedDataParallelPlugin()
    settings = yaml.safe_load((ROOT / "accelerate_configs" / "fsdp.yaml").read_text())["fsdp_config"]
    assert plugin.fsdp_version == settings["fsdp_version"] == 2
    assert plugin.cpu_ram_efficient_loading and plugin.reshard_after_forward


@pytest.mark.parametrize(
    "option, message",
    [
        (("--hw", "tpu"), "error: HW=tpu has no accelerate config; choose one of cpu, deepspeed_zero2,"),
        (("--model", "llama9"), "error: MODEL=llama9 is not a recipe folder; choose one of gpt2, pythia,"),
        (("--model", "gpt2"), "error: recipes/gpt2 has no pretrain.yaml; its stages are dpo, eval, grpo, ppo,"),
    ],
)
def test_an_unknown_model_or_hardware_is_one_line_listing_the_choices(option, message):
    """What `make pretrain HW=tpu` runs: accelerate used to end in a raw FileNotFoundError traceback."""
    command = [sys.executable, "-m", "rlhf_recipes.stages.command", "pretrain", *option]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith(message) and result.stderr.count("\n") == 1
