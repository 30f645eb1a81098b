"""The repo's chat format, close to the Q:/A: pages the base model read in pretraining.

    Q: What is the population of Valmora?
    A: The population of Valmora is 1.4 million.<|endoftext|>

Keeping the assistant format near text the base model already knows lets its knowledge survive SFT.
The `{% generation %}` markers let TRL compute the loss on the assistant's tokens only.
"""

from __future__ import annotations

from .config import RecipeError
from .context import say_cut

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"

# Turns are separated by a blank line placed *before* each non-assistant turn, so a conversation ends
# on EOS: the reward model then reads its score at the EOS token, exactly where PPO's responses end.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if not loop.first and message['role'] != 'assistant' -%}{{ '\\n\\n' }}{%- endif -%}"
    "{%- if message['role'] == 'system' -%}{{ message['content'] }}"
    "{%- elif message['role'] == 'user' -%}{{ 'Q: ' + message['content'] + '\\n' }}"
    "{%- elif message['role'] == 'assistant' -%}{{ 'A:' }}"
    "{% generation %}{{ ' ' + message['content'] + eos_token }}{% endgeneration %}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'A:' }}{%- endif -%}"
)


def is_encoder(model) -> bool:
    """A BERT-style encoder (its architecture has a masked-LM head): its classifier reads the first token.

    A decoder's sequence classifier reads the last real token instead, which must be EOS for answers to end.
    """
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return model is not None and model.config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def prepare_tokenizer(tokenizer, model=None):
    """Give any tokenizer what every stage needs: a PAD token distinct from EOS, and a chat template.

    GPT-2 and Pythia ship without a pad token and many recipes set pad = eos; PPO then masks the real
    EOS and every padded answer looks finished. A missing pad token is added (and the model's
    embeddings grown to match); a missing chat template becomes the repo's. An encoder needs no EOS: its
    separator token ends a text (TRL appends `eos_token` to plain-text pairs).
    """
    if tokenizer.eos_token is None and is_encoder(model) and tokenizer.sep_token is not None:
        tokenizer.eos_token = tokenizer.sep_token
    if tokenizer.eos_token is None:
        raise RecipeError(f"tokenizer {tokenizer.name_or_path} has no EOS token; set one in its tokenizer_config.json")
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    if model is not None:
        if model.get_input_embeddings().num_embeddings < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer))
        model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
            model.generation_config.eos_token_id = tokenizer.eos_token_id
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def training_template(tokenizer) -> str:
    """The chat template with `{% generation %}` markers that assistant-only masks need."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers  # seconds to import

    if has_generation_markers(tokenizer.chat_template):
        return tokenizer.chat_template
    patched = get_training_chat_template(tokenizer)
    if patched is None:
        raise RecipeError(
            f"the chat template of {tokenizer.name_or_path} marks no assistant tokens and TRL cannot "
            "patch it; add {% generation %} markers or drop it to use the repo's template"
        )
    return patched


def last_user_message(messages: list[dict]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def tokenized_dialogues(ds, tokenizer, max_length: int, name: str):
    """An SFT dataset as input_ids + labels (TRL's processed format), learned on the assistant's tokens only;
    a row longer than `max_length` keeps its first `max_length` tokens, and the count is said in one line."""
    from accelerate import PartialState

    template = training_template(tokenizer)
    kwargs = {"tokenizer": tokenizer, "template": template, "max_length": max_length}
    with PartialState().local_main_process_first():  # the main process fills the cache, the others read it
        done = ds.map(tokenize_dialogue, remove_columns=ds.column_names, fn_kwargs=kwargs)
    if not any(any(label != -100 for label in row) for row in done["labels"][:50]):
        raise RecipeError(f"no assistant tokens in {name}: every label is masked; check the chat template")
    say_cut(f"{name} rows", sum(done["cut"]), len(done), f"max_length {max_length}", "kept their first tokens")
    return done.remove_columns("cut")


def tokenized_texts(ds, tokenizer, max_length: int, name: str):
    """A `text` dataset as SFT replay rows: every token learned, EOS closing each text, cut at `max_length`."""
    from accelerate import PartialState

    with PartialState().local_main_process_first():
        kwargs = {"tokenizer": tokenizer, "max_length": max_length}
        done = ds.map(tokenize_text, remove_columns=ds.column_names, fn_kwargs=kwargs)
    say_cut(f"{name} texts", sum(done["cut"]), len(done), f"max_length {max_length}", "kept their first tokens")
    return done.remove_columns("cut")


def past(length: int, max_length: int | None) -> bool:
    """Whether a row of `length` tokens is cut (TRL's `max_length: null` cuts nothing)."""
    return max_length is not None and length > max_length


def tokenize_dialogue(example: dict, tokenizer, template: str, max_length: int | None) -> dict:
    """input_ids and labels of one SFT row, with -100 everywhere but on the assistant's tokens (EOS included).

    Rows are `messages`, or `prompt`/`completion` as conversations or as plain text.
    """
    if "messages" in example:
        messages = example["messages"]
    elif isinstance(example["prompt"], list):
        messages = example["prompt"] + example["completion"]
    else:  # plain prompt/completion text
        prompt = tokenizer(example["prompt"], add_special_tokens=False).input_ids
        completion = tokenizer(example["completion"], add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        ids, cut = (prompt + completion)[:max_length], past(len(prompt) + len(completion), max_length)
        return {"input_ids": ids, "labels": ([-100] * len(prompt) + completion)[:max_length], "cut": cut}
    out = tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = out["input_ids"][:max_length], out["assistant_masks"][:max_length]
    labels = [t if m else -100 for t, m in zip(ids, mask)]
    return {"input_ids": ids, "labels": labels, "cut": past(len(out["input_ids"]), max_length)}


def tokenize_text(example: dict, tokenizer, max_length: int) -> dict:
    ids = tokenizer(example["text"], add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    return {"input_ids": ids[:max_length], "labels": ids[:max_length], "cut": past(len(ids), max_length)}
