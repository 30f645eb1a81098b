"""Every ModelConfig field a recipe accepts is honoured or refused in one line, never silently ignored."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from conftest import TINY, script, stage
from rlhf_recipes.training.config import RecipeError
from rlhf_recipes.training.loading import model_kwargs
from rlhf_recipes.training.models import load_model


@pytest.fixture(scope="module")
def tiny_model(tokenizer_dir, tmp_path_factory):
    """A one-layer GPT-2 with the test tokenizer: enough to load, not to train."""
    out = tmp_path_factory.mktemp("models") / "gpt2"
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_embd=16, n_head=2)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def sft_configs(model_dir, tmp_path, *extra):
    argv = ["--config", str(TINY / "sft.yaml"), "--model_name_or_path", str(model_dir), "--output_dir",
            str(tmp_path / "sft"), *extra]  # fmt: skip
    sft, _ = stage("sft").from_argv(argv)
    return sft.model_args, sft.config


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_sft_loads_the_attention_implementation_the_recipe_names(tiny_model, tmp_path, attention):
    model, _ = load_model(
        AutoModelForCausalLM, *sft_configs(tiny_model, tmp_path, "--attn_implementation", attention), "fix"
    )
    assert model.config._attn_implementation == attention


def test_an_unknown_attention_implementation_is_one_line(tiny_model, tmp_path):
    with pytest.raises(RecipeError, match="cannot load") as caught:
        load_model(
            AutoModelForCausalLM, *sft_configs(tiny_model, tmp_path, "--attn_implementation", "warp_drive"), "fix"
        )
    assert "\n" not in str(caught.value)


def test_remote_code_is_trusted_only_when_the_recipe_says_so(tiny_model, tmp_path):
    assert model_kwargs(*sft_configs(tiny_model, tmp_path))["trust_remote_code"] is False
    kwargs = model_kwargs(*sft_configs(tiny_model, tmp_path, "--trust_remote_code", "true", "--model_revision", "v2"))
    assert kwargs["trust_remote_code"] is True and kwargs["revision"] == "v2"


@pytest.mark.parametrize("field, value", [("model_name_or_path", "gpt2"), ("load_in_4bit", "true"),
                                          ("model_revision", "v2")])  # fmt: skip
def test_ppo_refuses_model_fields_it_would_ignore(tmp_path, field, value):
    argv = ["--config", str(TINY / "ppo.yaml"), f"--{field}", value, "--output_dir", str(tmp_path / "ppo")]
    with pytest.raises(RecipeError, match=f"PPO does not use {field}"):
        script("ppo")(argv)
    assert not (tmp_path / "ppo.partial").exists()


@pytest.mark.parametrize("name", ["sft", "reward"])
def test_streaming_datasets_are_refused(tmp_path, name):
    config = TINY / f"{name}.yaml"
    with pytest.raises(RecipeError, match="dataset_streaming is not supported"):
        script(name)(["--config", str(config), "--dataset_streaming", "true", "--output_dir", str(tmp_path / "out")])


def test_a_pickled_checkpoint_is_refused_with_the_fix(tiny_model, tmp_path):
    """Safe loading by default: `.bin` weights can run code when unpickled, so only safetensors load."""
    pickled = tmp_path / "pickled"
    model = GPT2LMHeadModel.from_pretrained(tiny_model)
    model.config.save_pretrained(pickled)
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")  # what older tools wrote
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(pickled)
    assert not list(pickled.glob("*.safetensors")) and list(pickled.glob("*.bin"))
    with pytest.raises(RecipeError, match="pickled .bin weights") as caught:
        load_model(AutoModelForCausalLM, *sft_configs(pickled, tmp_path), "fix")
    assert "\n" not in str(caught.value)
