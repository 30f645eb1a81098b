"""Loading datasets, models and tokenizers, local or from the hub, with one-line errors instead of tracebacks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from accelerate import PartialState

from ..compat import on_this_process_only
from .config import RecipeError, first_line


def looks_like_hub_id(name: str) -> bool:
    """'gpt2' or 'owner/name' is a hub id; anything deeper, or starting with '.' or '/', is a local path."""
    return not name.startswith((".", "/", "~")) and name.count("/") <= 1 and not Path(name).exists()


def require_dir(path: str | Path, what: str, fix: str) -> Path:
    """Fail clearly on a missing local directory; hub ids pass through to the hub loaders."""
    if isinstance(path, str) and looks_like_hub_id(path):
        return Path(path)
    path = Path(path)
    if not path.is_dir():
        raise RecipeError(f"{what} {path} not found; {fix}")
    return path


def load_splits(
    name: str, splits: Sequence[str], accepts: Sequence[set[str]], fix: str, config: str | None = None
) -> dict:
    """Load `splits` of a local or hub dataset that has one of the `accepts` column sets, or fail in one line."""
    from datasets import load_dataset  # heavy; only the stages that read data pay for it

    require_dir(name, "dataset", fix)
    for f in sorted(Path(name).glob("*.json*")) if Path(name).is_dir() else []:
        if f.stat().st_size == 0:
            raise RecipeError(f"dataset file {f} is empty; {fix}")
    try:
        raw = load_dataset(name, config)
    except Exception as e:  # offline hub, malformed file, ...: one line, the cause chained for --debug
        raise RecipeError(f"cannot load dataset {name}: {type(e).__name__}: {first_line(e)}") from e
    wanted = " or ".join("/".join(sorted(c)) for c in accepts)
    out = {}
    for split in splits:
        if split not in raw:
            raise RecipeError(f"dataset {name} has splits {list(raw)}, not {split!r}; set the split in the config")
        ds = raw[split]
        if not any(c <= set(ds.column_names) for c in accepts):
            raise RecipeError(f"dataset {name} split {split!r} has columns {ds.column_names}; expected {wanted}")
        if len(ds) == 0:
            raise RecipeError(f"dataset {name} split {split!r} is empty; {fix}")
        out[split] = ds
    return out


def load_pretrained(auto_class, name: str, fix: str = "check the path or hub id", **kwargs):
    """`auto_class.from_pretrained(name)`, failing in one line on a missing path or an unreachable hub.

    Models load from safetensors only: a pickled `.bin` checkpoint can run code when it is read.
    """
    require_dir(name, auto_class.__name__.removeprefix("Auto").lower(), fix)
    is_model = "Tokenizer" not in auto_class.__name__
    if is_model:
        kwargs.setdefault("use_safetensors", True)
    try:
        return auto_class.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as e:
        if looks_like_hub_id(name):
            hint = (f"; the hub is unreachable (offline?): download it first (`hf download {name}`, then run again "
                    "with HF_HUB_OFFLINE=1) or set the path to a local copy")  # fmt: skip
        elif is_model and not any(Path(name).glob("*.safetensors")) and any(Path(name).glob("*.bin")):
            hint = ("; it holds only pickled .bin weights, which are not loaded (they can run code): convert them "
                    "with `save_pretrained(..., safe_serialization=True)` where you trust them")  # fmt: skip
        else:
            hint = ""
        raise RecipeError(f"cannot load {name}: {first_line(e)}{hint}") from e


def quantization_kwargs(model_args) -> dict:
    """`from_pretrained` arguments for a 4/8-bit base: the quantization config, and this rank's own device.

    Quantized weights are placed at load time; without a device map every rank would load onto GPU 0.
    """
    from trl import get_quantization_config

    config = get_quantization_config(model_args)
    return {} if config is None else {"quantization_config": config, "device_map": {"": str(PartialState().device)}}


def model_kwargs(model_args, training_args=None) -> dict:
    """`from_pretrained` arguments for the model a ModelConfig names: every field the recipes accept, honoured.

    Revision, dtype, attention implementation, 4/8-bit quantization (onto this rank's device),
    `trust_remote_code` (false unless the recipe says true) and the trainer config's `model_init_kwargs`,
    which TRL applies only when it loads a model from a name itself; the recipes hand it a loaded model.
    """
    return {
        "revision": model_args.model_revision,
        "dtype": model_args.dtype,
        "attn_implementation": model_args.attn_implementation,
        **tokenizer_kwargs(model_args, training_args),
        **quantization_kwargs(model_args),
        **(getattr(training_args, "model_init_kwargs", None) or {}),
    }


def tokenizer_kwargs(model_args, training_args=None) -> dict:
    """The tokenizer's share of `model_kwargs`: the same revision, and the same trust in remote code."""
    return {
        "revision": model_args.model_revision,
        "trust_remote_code": getattr(training_args, "trust_remote_code", False),
    }


def load_trained(auto_class, out: Path, **kwargs):
    """The model a stage just saved, loaded plainly on this process (a LoRA adapter onto its base).

    Stages evaluate this, not the trainer's object: under ZeRO-3 or FSDP the trained weights are
    sharded over the ranks, and a forward pass on the main process alone would wait forever.
    """
    if (out / "adapter_config.json").is_file():
        import peft

        auto_class = getattr(peft, auto_class.__name__.replace("AutoModel", "AutoPeftModel"))
    with on_this_process_only():
        return auto_class.from_pretrained(out, use_safetensors=True, **kwargs)


def merge_saved_adapter(model, tokenizer, out: Path):
    """Turn a stage's LoRA output into a full model at `out` (the adapter moves to `out/adapter`).

    The next stage then loads `out` like any checkpoint, with no PEFT code.
    """
    adapter = out / "adapter"
    model.save_pretrained(adapter)  # the adapter config and weights, as the trainer saved them
    for f in out.glob("adapter_*"):
        f.unlink()
    merged = model.merge_and_unload()
    merged.config.pad_token_id = tokenizer.pad_token_id  # the base's config may predate the added PAD token
    with on_this_process_only():
        merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return merged
