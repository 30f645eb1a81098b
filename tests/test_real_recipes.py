"""Every shipped real-model recipe runs offline: its YAML exactly as a user loads it, with only the hub
model and dataset names swapped for local stand-ins (a tiny random model of the same architecture class,
a tokenizer with the same quirks, and a few rows in the hub dataset's schema), on the CPU, for two steps.
"""

import json
from pathlib import Path

import pytest
import trl
import yaml
from tokenizers import Tokenizer
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from conftest import ROOT, script
from rlhf_recipes.training.loading import looks_like_hub_id

pytestmark = pytest.mark.slow  # trains tiny models for real: `make test`, not `make test-fast`


def starts_from_the_hub(sft_yaml: Path) -> bool:
    """A recipe whose SFT starts from a hub model (not from a base model this repo pretrains)."""
    return looks_like_hub_id(yaml.safe_load(sft_yaml.read_text()).get("model_name_or_path") or "")


RECIPES = sorted(p.parent.name for p in (ROOT / "recipes").glob("*/sft.yaml") if starts_from_the_hub(p))
SMALL = {"num_hidden_layers": 2, "num_attention_heads": 2, "hidden_size": 64, "intermediate_size": 128}


def chatml_tokenizer(base: Tokenizer, eos: str, template: str) -> PreTrainedTokenizerFast:
    tok = PreTrainedTokenizerFast(
        tokenizer_object=base, eos_token=eos, pad_token=eos, additional_special_tokens=["<|im_start|>", "<|im_end|>"]
    )
    tok.chat_template = template
    return tok


CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
QWEN25 = (Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja").read_text()  # the real Qwen2.5 template

# hub id -> (config of the same architecture class, tokenizer with the same quirks as the real one)
STAND_INS = {
    "openai-community/gpt2": (  # no pad token, no chat template, tied head
        lambda v: GPT2Config(vocab_size=v, n_layer=2, n_head=2, n_embd=64, n_positions=1024),
        lambda base: PreTrainedTokenizerFast(tokenizer_object=base, eos_token="<|endoftext|>"),
    ),
    "EleutherAI/pythia-160m": (  # GPT-NeoX: untied head, no pad token, no chat template
        lambda v: GPTNeoXConfig(vocab_size=v, max_position_embeddings=2048, tie_word_embeddings=False, **SMALL),
        lambda base: PreTrainedTokenizerFast(tokenizer_object=base, eos_token="<|endoftext|>"),
    ),
    "HuggingFaceTB/SmolLM2-135M-Instruct": (  # Llama: EOS <|im_end|> doubling as pad, template without markers
        lambda v: LlamaConfig(
            vocab_size=v, max_position_embeddings=8192, tie_word_embeddings=True, num_key_value_heads=1, **SMALL
        ),
        lambda base: chatml_tokenizer(base, "<|im_end|>", CHATML),
    ),
    "Qwen/Qwen2.5-1.5B": (  # Qwen2: pad == EOS == <|endoftext|>, the Qwen2.5 chat template
        lambda v: Qwen2Config(
            vocab_size=v, max_position_embeddings=32768, tie_word_embeddings=True, num_key_value_heads=1, **SMALL
        ),
        lambda base: chatml_tokenizer(base, "<|endoftext|>", QWEN25),
    ),
}


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_splits(out: Path, train: list[dict], test: list[dict]) -> Path:
    out.mkdir(parents=True)
    for name, split in (("train", train), ("test", test)):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in split))
    return out


def stand_in_datasets(world_dir: Path, out: Path) -> dict[str, Path]:
    """A few rows in the schema of each hub dataset the recipes name."""
    dialogues = rows(world_dir / "sft" / "train.jsonl")[:24]
    pairs = [
        {
            "chosen": r["prompt"] + r["chosen"],
            "rejected": r["prompt"] + r["rejected"],
            "score_chosen": 8.0,
            "score_rejected": 4.0,
        }
        for r in rows(world_dir / "preferences" / "train.jsonl")[:40]
    ]
    prompts = [{"prompt": r["prompt"]} for r in rows(world_dir / "rl_prompts" / "train.jsonl")[:24]]
    return {
        "trl-lib/Capybara": write_splits(out / "capybara", dialogues[:20], dialogues[20:]),
        "trl-lib/ultrafeedback_binarized": write_splits(out / "ultrafeedback", pairs[:32], pairs[32:]),
        "trl-lib/ultrafeedback-prompt": write_splits(out / "prompts", prompts[:20], prompts[20:]),
    }


def stand_in_model(hub_id: str, tokenizer_dir: Path, out: Path) -> Path:
    config, tokenizer = STAND_INS[hub_id]
    tok = tokenizer(Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")))
    model = AutoModelForCausalLM.from_config(config(len(tok)))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def recipe(name: str, stage: str) -> tuple[Path, dict]:
    path = ROOT / "recipes" / name / f"{stage}.yaml"
    return path, yaml.safe_load(path.read_text())


def swap(config: dict, stand_ins: dict[str, Path], **paths: Path) -> list[str]:
    """Command-line overrides that swap hub names for stand-ins, plus a two-step CPU run."""
    args = [
        f"--{key}={stand_ins[value]}" for key, value in config.items() if isinstance(value, str) and value in stand_ins
    ]
    return args + [f"--{key}={value}" for key, value in paths.items()] + ["--use_cpu=true"]


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_runs_every_stage_offline(name, world_dir, tokenizer_dir, tmp_path):
    sft_yaml, sft_config = recipe(name, "sft")
    hub_model = sft_config["model_name_or_path"]
    assert hub_model in STAND_INS, f"add a stand-in for {hub_model} to this test"
    stand_ins = {
        hub_model: stand_in_model(hub_model, tokenizer_dir, tmp_path / "base"),
        **stand_in_datasets(world_dir, tmp_path / "data"),
    }

    sft_out = tmp_path / "sft"
    script("sft")(["--config", str(sft_yaml), *swap(sft_config, stand_ins, output_dir=sft_out), "--max_steps=2"])
    policy = AutoModelForCausalLM.from_pretrained(sft_out)  # a full model, LoRA recipes included (merged)
    tok = AutoTokenizer.from_pretrained(sft_out)
    assert tok.pad_token_id != tok.eos_token_id and tok.chat_template
    assert type(policy).__name__.startswith(type(AutoModelForCausalLM.from_pretrained(stand_ins[hub_model])).__name__)

    reward_yaml, reward_config = recipe(name, "reward")
    reward_out = tmp_path / "reward"
    script("reward")(
        [
            "--config",
            str(reward_yaml),
            *swap(reward_config, stand_ins, model_name_or_path=sft_out, output_dir=reward_out),
            "--max_steps=2",
        ]
    )
    assert AutoModelForSequenceClassification.from_pretrained(reward_out).config.num_labels == 1

    ppo_yaml, ppo_config = recipe(name, "ppo")
    ppo_out = tmp_path / "ppo"
    metrics = script("ppo")(
        [
            "--config",
            str(ppo_yaml),
            *swap(ppo_config, stand_ins, sft_model_path=sft_out, reward_model_path=reward_out, output_dir=ppo_out),
            "--total_episodes=8",
            "--per_device_train_batch_size=4",
            "--gradient_accumulation_steps=1",
            "--local_rollout_forward_batch_size=4",
            "--response_length=8",
            "--num_eval_prompts=2",
        ]
    )
    assert metrics["updates"] == 2
    assert AutoModelForCausalLM.from_pretrained(ppo_out) is not None

    short = ["--per_device_train_batch_size=4", "--gradient_accumulation_steps=1"]
    online = [*short, "--max_steps=1", "--num_generations=2", "--max_completion_length=8", "--num_eval_prompts=2"]
    for method, stage, extra, models in (
        ("dpo", "dpo", [*short, "--max_steps=2"], {}),
        ("rloo", "online", online, {"reward_model_path": reward_out}),
        ("grpo", "online", online, {"reward_model_path": reward_out}),
    ):
        method_yaml, method_config = recipe(name, method)
        out = tmp_path / method
        paths = swap(method_config, stand_ins, model_name_or_path=sft_out, output_dir=out, **models)
        metrics = script(stage)(["--config", str(method_yaml), *paths, *extra])
        assert metrics["updates"] >= 1 and AutoModelForCausalLM.from_pretrained(out) is not None, method
