"""What every stage script shares: strict config parsing, clear errors, launch and loading helpers."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import gather_object


class RecipeError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits non-zero."""


def on_cpu_by_launch() -> bool:
    """The accelerate config chose the CPU: `use_cpu: true` (cpu.yaml), or several ranks and no GPU (multi_cpu)."""
    if os.environ.get("ACCELERATE_USE_CPU", "false").lower() == "true":
        return True
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def launched_with(engine: str) -> bool:
    """Whether `accelerate launch` set up DeepSpeed or FSDP for this process."""
    return os.environ.get(f"ACCELERATE_USE_{engine}", "false").lower() == "true"


def hardware_from_launch(parser, argv: list[str]) -> list[str]:
    """Apply what the accelerate config decided about the CPU to the trainer's arguments.

    Recipes hold hyperparameters only, so the launch decides the device. On the CPU the trainer needs
    `use_cpu` (else a bf16 recipe is refused, and several ranks each think they are alone and train on
    the whole dataset) and the gloo backend. DeepSpeed on CPU ranks keeps its engine and needs only gloo.
    """
    if launched_with("FSDP") and not torch.cuda.is_available():
        raise RecipeError("FSDP needs GPUs here (on CPU ranks it did not train correctly); without a GPU use "
                          "HW=multi_cpu (DDP) or HW=deepspeed_zero3 (sharded)")
    deepspeed = launched_with("DEEPSPEED")
    if not on_cpu_by_launch() or (deepspeed and torch.cuda.is_available()):
        return argv
    fields = set().union(*(getattr(t, "__dataclass_fields__", {}) for t in parser.dataclass_types))
    extra = []
    if not deepspeed:
        os.environ["ACCELERATE_USE_CPU"] = "true"
        extra += ["--use_cpu", "true"] if "use_cpu" in fields and "--use_cpu" not in argv else []
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        PartialState(cpu=not deepspeed, backend="gloo")
        extra += ["--ddp_backend", "gloo"] if "ddp_backend" in fields and "--ddp_backend" not in argv else []
    return argv + extra


def parse(parser, argv: Sequence[str] | None) -> tuple:
    """Parse `--config x.yaml` plus command-line overrides, refusing unknown keys in either."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" in argv:
        path = Path(argv[argv.index("--config") + 1])
        if not path.is_file():
            raise RecipeError(f"config file {path} not found; pass --config recipes/<model>/<stage>.yaml")
    argv = hardware_from_launch(parser, argv)
    try:
        configs = parser.parse_args_and_config(argv, fail_with_unknown_args=True)
    except ValueError as e:
        message = first_line(e)
        if "Unknown arguments from config file" in message or "not used by the HfArgumentParser" in message:
            raise RecipeError(f"{message.split('. Please')[0]}; check the spelling or run with --help") from e
        raise RecipeError(message) from e
    return configs


def cli(main: Callable[[Sequence[str] | None], object]) -> None:
    """Run a stage's `main`, turning a `RecipeError` into one line on stderr and exit status 2."""
    try:
        main(None)
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


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


def load_splits(name: str, splits: Sequence[str], accepts: Sequence[set[str]], fix: str,
                config: str | None = None) -> dict:
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
    """`auto_class.from_pretrained(name)`, failing in one line on a missing path or an unreachable hub."""
    require_dir(name, auto_class.__name__.removeprefix("Auto").lower(), fix)
    try:
        return auto_class.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as e:
        hint = (f"; the hub is unreachable (offline?): download it first (`hf download {name}`, then run again with "
                "HF_HUB_OFFLINE=1) or set the path to a local copy") if looks_like_hub_id(name) else ""
        raise RecipeError(f"cannot load {name}: {first_line(e)}{hint}") from e


def quantization_kwargs(model_args) -> dict:
    """`from_pretrained` arguments for a 4/8-bit base: the quantization config, and this rank's own device.

    Quantized weights are placed at load time; without a device map every rank would load onto GPU 0.
    """
    from trl import get_quantization_config

    config = get_quantization_config(model_args)
    return {} if config is None else {"quantization_config": config, "device_map": {"": str(PartialState().device)}}


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0]


@contextmanager
def on_this_process_only() -> Iterator[None]:
    """Let from_pretrained/save_pretrained run on one process while a DeepSpeed ZeRO-3 run is live.

    While transformers holds a ZeRO-3 config it shards every load and gathers every save over all the
    ranks, so the main process alone would wait forever for the others.
    """
    from transformers.integrations import deepspeed

    zero3 = deepspeed._hf_deepspeed_config_weak_ref
    deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        deepspeed._hf_deepspeed_config_weak_ref = zero3


def load_trained(auto_class, out: Path, **kwargs):
    """The model a stage just saved, loaded plainly on this process (a LoRA adapter onto its base).

    Stages evaluate this, not the trainer's object: under ZeRO-3 or FSDP the trained weights are
    sharded over the ranks, and a forward pass on the main process alone would wait forever.
    """
    if (out / "adapter_config.json").is_file():
        import peft

        auto_class = getattr(peft, auto_class.__name__.replace("AutoModel", "AutoPeftModel"))
    with on_this_process_only():
        return auto_class.from_pretrained(out, **kwargs)


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


def weights_checksum(model) -> float | None:
    """Sum of every weight in float64; None where ZeRO-3 leaves each rank only a shard."""
    params = list(model.parameters())
    if any(hasattr(p, "ds_id") for p in params):
        return None
    return float(sum(p.detach().double().abs().sum().item() for p in params))


def rank_summary(model) -> dict:
    """How many processes trained, and each one's weights checksum: data parallel ranks must agree."""
    return {"processes": PartialState().num_processes, "weights_checksum_by_rank": gather_object([weights_checksum(model)])}


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 1)
