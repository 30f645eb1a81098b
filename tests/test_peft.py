"""Parameter-efficient training on CPU for real: LoRA reward model, QLoRA (4-bit nf4) SFT, 8-bit Adam; and a
stage that starts without bitsandbytes until QLoRA needs it.

LoRA SFT and LoRA PPO (reference = the adapter switched off) are in test_sft.py and test_ppo.py.
"""

import json
import math
import subprocess
import sys

import pytest
import torch
from peft import PeftConfig
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from conftest import ROOT, reward_args, script, sft_args, stage
from rlhf_recipes.training.config import RecipeError
from rlhf_recipes.training.models import load_model

pytestmark = pytest.mark.slow  # trains tiny models for real: `make test`, not `make test-fast`


def logged_losses(out):
    return [e["loss"] for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in e]


def test_lora_reward_model_is_saved_whole_with_its_adapter(world_dir, sft_model, tmp_path):
    out = tmp_path / "reward-lora"
    metrics = script("reward")(
        reward_args(
            sft_model[0],
            world_dir / "preferences",
            out,
            "--use_peft",
            "--lora_task_type",
            "SEQ_CLS",
            "--lora_r",
            "16",
            "--lora_alpha",
            "32",
            "--lora_target_modules",
            "all-linear",
            "--learning_rate",
            "3e-3",
            "--num_train_epochs",
            "3",
        )
    )
    assert metrics["heldout"]["gold_agreement"] > 0.6, metrics["heldout"]
    assert PeftConfig.from_pretrained(out / "adapter").task_type == "SEQ_CLS"
    model = AutoModelForSequenceClassification.from_pretrained(out)  # a plain model: PPO loads it whole
    assert model.config.num_labels == 1 and not (out / "adapter_config.json").exists()


def test_lora_reward_model_needs_the_classification_task_type(world_dir, sft_model, tmp_path):
    with pytest.raises(RecipeError, match="lora_task_type: SEQ_CLS"):
        script("reward")(reward_args(sft_model[0], world_dir / "preferences", tmp_path / "r", "--use_peft"))


def test_qlora_sft_trains_an_adapter_on_a_4bit_base(world_dir, pretrained, tmp_path):
    out = tmp_path / "qlora"
    args = sft_args(
        world_dir,
        pretrained[0],
        out,
        "--use_peft",
        "--load_in_4bit",
        "--bnb_4bit_quant_type",
        "nf4",
        "--lora_r",
        "8",
        "--lora_alpha",
        "16",
        "--lora_target_modules",
        "all-linear",
        "--max_steps",
        "10",
        "--eval_prompts",
        "",
    )
    sft, _ = stage("sft").from_argv(args)
    model, _ = load_model(AutoModelForCausalLM, sft.model_args, sft.config, "fix")
    from bitsandbytes.nn import Linear4bit  # here: ~1.4 s that every test worker's collection would pay

    assert isinstance(model.transformer.h[0].mlp.c_fc, Linear4bit)
    assert model.transformer.h[0].mlp.c_fc.weight.dtype == torch.uint8  # nf4 codes, two per byte
    script("sft")(args)
    adapter = load_file(out / "adapter_model.safetensors")
    lora_b = [w for name, w in adapter.items() if "lora_B" in name]
    assert lora_b and all(w.abs().sum() > 0 for w in lora_b)  # B starts at zero: gradients reached every adapter
    assert all(math.isfinite(loss) for loss in logged_losses(out))
    assert PeftConfig.from_pretrained(out).base_model_name_or_path == str(pretrained[0])


def test_8bit_adam_trains(world_dir, pretrained, tmp_path):
    out = tmp_path / "adam8"
    script("sft")(
        sft_args(world_dir, pretrained[0], out, "--optim", "adamw_8bit", "--max_steps", "30", "--eval_prompts", "")
    )
    losses = logged_losses(out)
    assert losses[-1] < losses[0]
    assert torch.load(out / "training_args.bin", weights_only=False).optim == "adamw_8bit"


STARTS_A_STAGE = """
import ast, json, sys
source = open("recipes/sft.py").read()
body = ast.parse(source).body
exec("\\n".join(ast.get_source_segment(source, n) for n in body if isinstance(n, (ast.Import, ast.ImportFrom))))
import torch.fx.experimental.proxy_tensor  # reads every module's __file__ as it registers its ops
started = {"inductor": "torch._inductor.compile_fx" in sys.modules, "peft": "peft" in sys.modules}
started["bitsandbytes imported"] = type(sys.modules["bitsandbytes"]).__name__ == "module"
from peft import LoraConfig, get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel
model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2))
get_peft_model(model, LoraConfig(r=4, target_modules=["c_attn"]))  # reads `bitsandbytes.nn`
from bitsandbytes.nn import Linear4bit
print(json.dumps({**started, "Linear4bit": Linear4bit.__module__}))
"""


def test_a_stage_starts_without_loading_bitsandbytes_and_loads_it_on_first_use():
    """peft imports bitsandbytes, which imports torch's inductor (~4 s a stage): deferred to its first use."""
    done = subprocess.run([sys.executable, "-c", STARTS_A_STAGE], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    started = json.loads(done.stdout.splitlines()[-1])
    assert started == {
        "inductor": False,
        "peft": True,
        "bitsandbytes imported": False,
        "Linear4bit": "bitsandbytes.nn.modules",
    }
