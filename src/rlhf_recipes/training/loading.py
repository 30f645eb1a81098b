"""Loading datasets, models and tokenizers, local or from the hub, with one-line errors instead of tracebacks."""

from __future__ import annotations

import glob
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

from accelerate import PartialState

from .config import RecipeError, first_line

DATA_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
ROLES = ("system", "user", "assistant", "tool")
CHECKED_COLUMNS = {"text", "messages", "prompt", "completion", "chosen", "rejected"}
NOT_EMPTY = {"prompt", "completion", "messages"}  # an empty chosen/rejected answer is a fair thing to rank


def dataset_help(columns: str) -> str:
    """The --help of a dataset option: the columns the stage reads and every form the option accepts."""
    return (
        f"Columns read: {columns}. A hub id (owner/name, @revision to pin one), a dataset folder, a data file "
        "(.jsonl, .json, .csv, .parquet), a glob or a comma-separated list of files (their split: train)."
    )


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


@dataclass
class HeldOutArguments:
    eval_split_ratio: float = field(
        default=0.05,
        metadata={
            "help": "When the dataset has a train split only: the share of it held out for evaluation (seeded "
            "by seed; the log says how many rows). 0: a missing test split is an error. SFT runs without "
            "evaluation, and holds nothing out, with eval_strategy no; pretraining and the reward model always "
            "evaluate (perplexity, pair accuracy)."
        },
    )


def load_splits(
    name: str,
    splits: Sequence[str],
    accepts: Sequence[set[str]],
    fix: str,
    config: str | None = None,
    held_out: tuple[float, int] = (0.0, 0),
) -> dict:
    """Load `splits` of a dataset that has one of the `accepts` column sets, or fail in one line.

    `name` is a hub id (`owner/name@revision`), a dataset folder, a data file, a glob or a comma-separated
    list of files. Without the second of `splits`, a share `held_out` = (ratio, seed) of the first is held
    out in its place. Every row is checked up front: TRL would fail on a bad one hours in, or skip it silently.
    """
    raw = dict(load_raw(name, fix, config))
    wanted = " or ".join("/".join(sorted(c)) for c in accepts)
    for split in [s for s in splits if s in raw]:  # before a hold-out shuffles them: rows keep their places
        ds = raw[split]
        if not any(c <= set(ds.column_names) for c in accepts):
            raise RecipeError(f"dataset {name} split {split!r} has columns {ds.column_names}; expected {wanted}")
        if len(ds) == 0:
            raise RecipeError(f"dataset {name} split {split!r} is empty; {fix}")
        raw[split] = check_rows(ds, name, split, set().union(*accepts) & CHECKED_COLUMNS)
    raw = hold_out(raw, name, splits, *held_out)
    return {split: raw[split] for split in splits}


def hold_out(raw: dict, name: str, splits: Sequence[str], ratio: float, seed: int) -> dict:
    """`raw` with every split in `splits`: a missing second one carved out of the first when `ratio` allows."""
    missing = [s for s in splits if s not in raw]
    only_test = len(splits) > 1 and missing == [splits[1]] and splits[0] in raw
    if only_test and ratio > 0 and len(raw[splits[0]]) > 1:
        train, test = splits[0], splits[1]
        parts = raw[train].train_test_split(test_size=ratio, seed=seed)
        raw[train], raw[test] = parts["train"], parts["test"]
        PartialState().print(
            f"dataset {name} has no {test!r} split: held out {len(parts['test'])} of "
            f"{len(parts['test']) + len(parts['train'])} {train!r} rows (eval_split_ratio {ratio}, seed {seed})"
        )
    elif missing:
        hint = f", or eval_split_ratio above 0 to hold out part of {splits[0]!r}" if only_test else ""
        raise RecipeError(f"dataset {name} has splits {list(raw)}, not {missing[0]!r}; set the split name{hint}")
    return raw


def data_files(name: str) -> list[Path] | None:
    """The data files `name` names (a file, a glob, a comma-separated list of them), or None for a folder or hub id."""
    parts = [part.strip() for part in name.split(",")]
    if len(parts) == 1 and not glob.has_magic(name) and Path(name).suffix not in DATA_FILE_BUILDERS:
        return None
    files = []
    for part in parts:
        matched = sorted(map(Path, glob.glob(part))) if glob.has_magic(part) else [Path(part)]
        if not matched:
            raise RecipeError(f"dataset pattern {part} matches no file; check the pattern")
        for f in matched:
            if f.suffix not in DATA_FILE_BUILDERS:
                raise RecipeError(
                    f"dataset file {f} is not a data file `datasets` reads; use .jsonl, .json, .csv or .parquet, "
                    "or a dataset folder"
                )
            if not f.is_file():
                raise RecipeError(f"dataset file {f} not found; check the path")
        files += matched
    if len({DATA_FILE_BUILDERS[f.suffix] for f in files}) > 1:
        raise RecipeError(f"dataset {name} mixes file formats; convert the files to one of them")
    return files


def load_raw(name: str, fix: str, config: str | None = None):
    """The DatasetDict of a hub id (`owner/name@revision`), a dataset folder or data files (their split: `train`).

    A file that cannot be read is reported by file and line: `datasets` names neither.
    """
    from datasets import load_dataset  # heavy; only the stages that read data pay for it

    files = data_files(name)
    if files is not None:
        args, kwargs = [DATA_FILE_BUILDERS[files[0].suffix]], {"data_files": [str(f) for f in files]}
    elif looks_like_hub_id(name.split("@")[0]):
        hub_id, _, revision = name.partition("@")
        files, args, kwargs = [], [hub_id, config], {"revision": revision or None}
    else:
        folder = require_dir(name, "dataset", fix)
        files = sorted(f for f in folder.glob("*") if f.suffix in DATA_FILE_BUILDERS)
        args, kwargs = [name, config], {}
    for f in files:
        if f.stat().st_size == 0:
            raise RecipeError(f"dataset file {f} is empty; fill it or leave it out")
        if problem := not_utf8(f):  # pyarrow reads such bytes without a word and fails on the row later
            raise RecipeError(problem)
    try:
        return load_dataset(*args, **kwargs)
    except Exception as e:  # offline hub, malformed file, ...: one line, the cause chained
        if where := next(filter(None, map(bad_json_line, files)), None):
            raise RecipeError(where) from e
        if len(files) > 1 and type(e).__name__ in ("DatasetGenerationError", "CastError", "ValueError"):
            raise RecipeError(
                f"cannot load the {len(files)} files of {name} as one dataset ({first_line(e)}); their columns "
                f"must match: name one file, e.g. --dataset_name {files[0]}, or keep one dataset per folder"
            ) from e
        raise RecipeError(f"cannot load dataset {name}: {type(e).__name__}: {first_line(e)}") from e


def not_utf8(path: Path) -> str | None:
    """The first line of a text data file that is not UTF-8, or None."""
    if path.suffix not in (".jsonl", ".json", ".csv"):
        return None
    for n, line in enumerate(path.read_bytes().split(b"\n"), 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as e:
            return (
                f"{path} line {n} is not UTF-8 text (byte {line[e.start]:#04x} at column {e.start + 1}); "
                "re-save the file as UTF-8"
            )
    return None


def bad_json_line(path: Path) -> str | None:
    """The first line of a JSON (lines) file that is not a JSON object, or None: `datasets` names neither."""
    if path.suffix not in (".jsonl", ".json"):
        return None
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):  # one JSON document: a list of rows
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            return f"{path} line {e.lineno} is not valid JSON ({json_problem(e)}); fix it"
        return None
    for n, line in enumerate(text.split("\n"), 1):
        try:
            row = json.loads(line) if line.strip() else {}
        except json.JSONDecodeError as e:
            return f"{path} line {n} is not valid JSON ({json_problem(e)}); fix or delete that line"
        if not isinstance(row, dict):
            return f"{path} line {n} is {describe(row)}, not a JSON object of columns; write one object per line"
    return None


def json_problem(e: json.JSONDecodeError) -> str:
    return f"{e.msg.removesuffix(' at')} at column {e.colno}"  # "Unterminated string starting at" + column


def check_rows(ds, name: str, split: str, columns: set[str]):
    """`ds` less the pairs whose chosen and rejected are the same answer (said in one line): they carry no
    gradient, and real preference sets hold a few. Any other row a stage cannot learn from is refused by its
    place in the user's data (`row_places`), with the problem and the fix.
    """
    present = [c for c in ds.column_names if c in columns]
    if not present:
        return ds
    place, same = row_places(name, split), []
    for start, batch in enumerate(ds.select_columns(present).iter(batch_size=1000)):
        for i in range(len(batch[present[0]])):
            row, index = {c: batch[c][i] for c in present}, start * 1000 + i
            if problem := row_problem(row):
                where, unit, number = place(index)
                raise RecipeError(f"{where} {unit} {number}: {problem}")
            if "chosen" in row and "rejected" in row and row["chosen"] == row["rejected"]:
                same.append(index)
    if len(same) == len(ds):
        raise RecipeError(
            f"dataset {name} split {split!r}: `chosen` and `rejected` are the same answer in all {len(ds)} pairs, "
            "so they prefer nothing; check that the two columns hold different answers"
        )
    if same:
        PartialState().print(
            f"dropped {len(same)} of {len(ds)} pairs whose chosen and rejected are the same answer, so they prefer "
            f"nothing ({places_text([place(i) for i in same[:PLACES_SHOWN]], len(same))})"
        )
        dropped = set(same)
        ds = ds.select([i for i in range(len(ds)) if i not in dropped])
    return ds


def row_places(name: str, split: str):
    """A function from a row's index (from 0) in `split` to its place, as the user would look for it:
    (file, "line", its line) in JSON lines; (file, "row", its row) in a JSON list, CSV or Parquet file;
    (the split, "row", its row before any hold-out shuffles it) in a folder or hub dataset.
    """
    files, numbers = data_files(name), {}

    def place(index: int) -> tuple[str, str, int]:
        left = index
        for f in files or []:  # `datasets` reads the files in this order, one after another
            if f not in numbers:
                numbers[f] = file_rows(f)
            unit, rows = numbers[f]
            if left < len(rows):
                return str(f), unit, rows[left]
            left -= len(rows)
        return f"dataset {name} split {split!r}", "row", index + 1  # also where a file's rows were miscounted

    return place


def file_rows(path: Path) -> tuple[str, Sequence[int]]:
    """("line", the line of each row) of a JSON lines file, whose blank lines `datasets` skips; else ("row", 1...)."""
    if path.suffix in (".jsonl", ".json"):
        text = path.read_text(encoding="utf-8")
        if not text.lstrip().startswith("["):
            return "line", [n for n, line in enumerate(text.split("\n"), 1) if line.strip()]
        return "row", range(1, len(json.loads(text)) + 1)
    if path.suffix == ".csv":
        import pandas  # read as `datasets` reads it: a quoted cell may span lines, blank lines are skipped

        return "row", range(1, len(pandas.read_csv(path)) + 1)
    import pyarrow.parquet

    return "row", range(1, pyarrow.parquet.read_metadata(path).num_rows + 1)


PLACES_SHOWN = 10


def places_text(places: list[tuple[str, str, int]], count: int) -> str:
    """'prefs.jsonl lines 18, 40; more.jsonl line 3', then '…' when `count` is more than the places given."""
    parts = []
    for (where, unit), group in groupby(places, key=lambda p: p[:2]):
        numbers = [str(p[2]) for p in group]
        parts.append(f"{where} {unit}{'s' if len(numbers) > 1 else ''} {', '.join(numbers)}")
    return "; ".join(parts) + (", …" if count > len(places) else "")


def row_problem(row: dict) -> str | None:
    """What is wrong with one row in TRL's standard formats (plain text or {role, content} messages), or None."""
    for column, value in row.items():
        if problem := cell_problem(column, value):
            return problem
    return None


def cell_problem(column: str, value) -> str | None:
    """`text` is a string; `messages` a list of messages; the other columns either, and not empty where it matters."""
    if isinstance(value, str) and column != "messages":
        empty = column in NOT_EMPTY and not value.strip()
        return f"`{column}` is empty; fill it in or drop the row" if empty else None
    if column == "text":
        return f"`text` is {describe(value)}; it must be a string"
    if not (isinstance(value, list) and value and all(isinstance(m, dict) for m in value)):
        either = "" if column == "messages" else "a string or "
        return f"`{column}` is {describe(value)}; it must be {either}a list of {{role, content}} messages"
    for j, message in enumerate(value, 1):
        if message.get("role") not in ROLES:
            return f"`{column}` message {j} has role {message.get('role')!r}; use one of {', '.join(ROLES)}"
        if not isinstance(message.get("content"), str):
            return f"`{column}` message {j} has content {describe(message.get('content'))}; it must be a string"
    answers = [m["content"] for m in value if m["role"] == "assistant"]
    if column == "messages" and not answers:
        return "`messages` has no assistant turn, so there is nothing to learn; add the answer or drop the row"
    if column in ("messages", "completion") and not all(a.strip() for a in answers):
        return f"`{column}` has an empty assistant turn; fill it in or drop the row"
    if column == "prompt" and not any(m["content"].strip() for m in value):
        return "`prompt` is empty; fill it in or drop the row"
    return None


JSON_NAMES = {"str": "string", "dict": "object", "int": "number", "float": "number", "bool": "boolean"}


def describe(value) -> str:
    """What a value of the wrong kind is, in the words of the JSON a user wrote."""
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value) if value is None else f"the {JSON_NAMES[type(value).__name__]} {json.dumps(value)}"
    if isinstance(value, list):
        kinds = sorted({JSON_NAMES.get(type(v).__name__, type(v).__name__) for v in value})
        return f"a list of {'/'.join(kinds)} values" if value else "an empty list"
    name = JSON_NAMES.get(type(value).__name__, type(value).__name__)
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def load_pretrained(auto_class, name: str, fix: str = "check the path or hub id", **kwargs):
    """`auto_class.from_pretrained(name)`, failing in one line on a missing path or an unreachable hub.

    Models load from safetensors only: a pickled `.bin` checkpoint can run code when it is read.
    A local folder is checked first for what transformers would otherwise accept silently.
    """
    is_model = "Tokenizer" not in auto_class.__name__
    require_dir(name, "model" if is_model else "tokenizer", fix)
    if Path(name).is_dir() and is_model:
        check_model_head(auto_class, Path(name), fix, kwargs.get("num_labels"))
    elif Path(name).is_dir():
        require_vocab(Path(name), fix)
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
    except Exception as e:
        if type(e).__name__ != "SafetensorError":
            raise
        raise RecipeError(
            f"cannot load {name}: its safetensors weights are damaged ({first_line(e)}), e.g. cut short by an "
            "interrupted copy or a full disk; save or copy the model again"
        ) from e


def check_model_head(auto_class, path: Path, fix: str, num_labels: int | None) -> None:
    """Refuse a checkpoint whose saved head is not the one asked for: transformers would swap it silently.

    A sequence classifier or BERT loads as `AutoModelForCausalLM` with a fresh LM head, and a reward model
    saved with two outputs fails deep inside transformers with a size-mismatch report.
    """
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError):
        return  # from_pretrained reports it
    saved = config.architectures or []
    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    if auto_class.__name__ == "AutoModelForCausalLM" and saved:
        if not any(a in causal or a.endswith(("ForCausalLM", "LMHeadModel")) for a in saved):
            raise RecipeError(f"{path} holds a {saved[0]}, not a causal language model that writes text; {fix}")
    classifier = any(a.endswith("ForSequenceClassification") for a in saved)
    if num_labels is not None and classifier and config.num_labels != num_labels:
        raise RecipeError(
            f"{path} is a {saved[0]} with {config.num_labels} outputs, not {num_labels} (a reward model scores "
            f"with one); {fix}"
        )


def require_vocab(path: Path, fix: str) -> None:
    """A tokenizer folder must hold a vocabulary: without one transformers builds a one-token tokenizer silently."""
    names = [f.name for f in path.iterdir()]
    if not any(n in ("tokenizer.json", "tekken.json") or "vocab" in n or n.endswith((".model", ".spm", ".tiktoken"))
               for n in names):  # fmt: skip
        raise RecipeError(
            f"tokenizer {path} has no tokenizer files (tokenizer.json, vocab.json, tokenizer.model, ...); "
            f"save the tokenizer into it with `tokenizer.save_pretrained`, or {fix}"
        )


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
    from ..compat import on_this_process_only  # imports TRL: seconds the data-only stages skip

    if (out / "adapter_config.json").is_file():
        import peft

        auto_class = getattr(peft, auto_class.__name__.replace("AutoModel", "AutoPeftModel"))
    with on_this_process_only():
        return auto_class.from_pretrained(out, use_safetensors=True, **kwargs)


def merge_saved_adapter(model, tokenizer, out: Path):
    """Turn a stage's LoRA output into a full model at `out` (the adapter moves to `out/adapter`).

    The next stage then loads `out` like any checkpoint, with no PEFT code.
    """
    from ..compat import on_this_process_only

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
