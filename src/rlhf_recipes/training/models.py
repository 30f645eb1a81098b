"""A stage's model and tokenizer as its config names them, ready for training: the one way every stage loads them."""

from __future__ import annotations

from pathlib import Path

from .chat import prepare_tokenizer
from .config import RecipeError
from .context import check_max_length
from .loading import load_pretrained, load_trained, merge_saved_adapter, model_kwargs, tokenizer_kwargs


def load_model(auto_class, model_args, config, fix: str, **kwargs) -> tuple:
    """`auto_class` from `model_name_or_path` with every ModelConfig field honoured, and its tokenizer.

    The tokenizer gets a PAD distinct from EOS and a chat template: the config's `chat_template_path`
    if it names one, else the model's own, else the repo's. `kwargs` go to the model (`num_labels=1`).
    A trainer config's `max_length` past the model's context is refused here, before any data is read.
    """
    from transformers import AutoTokenizer

    name = model_args.model_name_or_path
    model = load_pretrained(auto_class, name, fix, **model_kwargs(model_args, config), **kwargs)
    tokenizer = load_pretrained(AutoTokenizer, name, fix, **tokenizer_kwargs(model_args, config))
    if template_path := getattr(config, "chat_template_path", None):
        template = Path(template_path)
        if not template.is_file():
            raise RecipeError(f"chat_template_path {template} not found; point it at a .jinja file")
        tokenizer.chat_template = template.read_text()
    if getattr(config, "max_length", None) is not None:
        check_max_length(config, model)
    return model, prepare_tokenizer(tokenizer, model)


def load_saved(auto_class, out: Path, tokenizer, merge: bool = False, **kwargs):
    """The model a stage just saved in `out`, loaded plainly on this process; with `merge`, its LoRA adapter
    merged in and the full model saved in its place (the adapter kept in `out/adapter`) for the next stage."""
    model = load_trained(auto_class, out, **kwargs)
    return merge_saved_adapter(model, tokenizer, out) if merge else model
