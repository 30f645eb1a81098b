"""Where a stage writes: finished-or-absent output directories that never replace what the project did not write.

A stage builds its output in `<output_dir>.partial` and renames it into place only when it succeeds. Every
directory it writes carries a small manifest (`rlhf_recipes.json`); a later run replaces a directory only if
it holds that manifest, or if the user passes `--overwrite_output_dir true`. Folders no run should ever
replace (`/`, the home directory, the working directory, a git checkout, this repo's own folders, an input
of the same stage) are refused outright, and a lock on the partial directory keeps two runs of the same
output apart.

Training stages checkpoint into the partial directory. A checkpoint counts as complete only once the
`CheckpointCompleted` callback has marked it (the trainer calls it after the last file is written), so a
run killed while saving leaves a checkpoint that the next run removes rather than loads. Running the same
command again resumes from the newest complete checkpoint, if the settings are the same as the dead run's.

A training stage with `push_to_hub: true` pushes its finished folder to `hub_model_id` once it is in place
(never the partial one, never a checkpoint); the Trainer's own push is turned off.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from accelerate import PartialState
from huggingface_hub import HfApi, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from .config import RecipeError, first_line
from .launch import command_line
from .loading import looks_like_hub_id

MANIFEST = "rlhf_recipes.json"
CHECKPOINT_DONE = "rlhf_recipes_checkpoint.json"
CHECKPOINT_PREFIX = "checkpoint"  # transformers' PREFIX_CHECKPOINT_DIR; importing it costs seconds
SNAPSHOTS = "snapshots"  # an RL stage's policy every few updates, for evaluation along the run
RUNS = "runs"  # transformers' TensorBoard logs: <output_dir>/runs/<time>_<host>/, one folder per run
HUB_SETTINGS = (
    *("push_to_hub", "hub_model_id", "hub_private_repo", "hub_token"),
    *("hub_strategy", "hub_revision", "hub_always_push"),
)
# settings that may change between a run and its resumption without changing what it computes; none is
# recorded in the manifest (hub_token must never be)
RESUMABLE_CHANGES = {
    *("output_dir", "logging_dir", "run_name", "overwrite_output_dir", "disable_tqdm", "report_to"),
    *("use_cpu", "ddp_backend", "dataloader_pin_memory"),  # the hardware: a run may continue on other devices
    *HUB_SETTINGS,
}
_CHECKOUT = Path(__file__).resolve().parents[3]
REPO_ROOT = _CHECKOUT if (_CHECKOUT / "recipes").is_dir() else None  # None when installed from a wheel
REPO_FOLDERS = ("data", "outputs", "recipes", "tests", "accelerate_configs", ".git", ".venv")
NOT_INPUTS = {"output_dir", "logging_dir", "run_name", "hub_model_id"}


@dataclass
class OutputArguments:
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace an output_dir that rlhf-recipes did not write (one a stage wrote is always "
            "replaced). Never needed for the make targets' own outputs."
        },
    )


@dataclass
class TrainingOutputArguments(OutputArguments):
    resume: bool = field(
        default=True,
        metadata={
            "help": "Continue from the newest complete checkpoint that a run of this stage left in "
            "<output_dir>.partial when it died (same settings required); false: start over."
        },
    )


def input_paths(*configs) -> dict[str, Path]:
    """Every field of the parsed configs that names an existing local file or folder: what a stage reads."""
    found = {}
    for config in configs:
        for f in dataclasses.fields(config):
            value = getattr(config, f.name)
            if f.name not in NOT_INPUTS and isinstance(value, str) and value and Path(value).exists():
                found[f.name] = Path(value).resolve()
    return found


def is_ours(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def _protected(out: Path) -> str | None:
    """Why `out` (resolved) must never be a stage's output directory, or None."""
    here, home = Path.cwd().resolve(), Path.home().resolve()
    if out == Path(out.anchor):
        return "the filesystem root"
    if out == home or out in home.parents:
        return "your home directory" if out == home else "a folder holding your home directory"
    if out == here or out in here.parents:
        return "the current directory" if out == here else "a folder holding the current directory"
    if REPO_ROOT and (out == REPO_ROOT or out in REPO_ROOT.parents):
        return "the rlhf-recipes checkout" if out == REPO_ROOT else "a folder holding the rlhf-recipes checkout"
    if REPO_ROOT and out.parent == REPO_ROOT and out.name in REPO_FOLDERS:
        return f"the repo's own {out.name}/ folder"
    if (out / ".git").exists():
        return "a git repository"
    return None


def check_output_dir(output_dir: str | Path, inputs: dict[str, Path], overwrite: bool) -> Path:
    """Refuse, in one line and before any work, an output_dir whose replacement would destroy something."""
    if not str(output_dir).strip():
        raise RecipeError("output_dir is empty; name a folder of its own, e.g. outputs/<model>/<stage>")
    out = Path(output_dir).expanduser().resolve()
    # the path as named too: the checkout's data/ may be a link to a folder elsewhere, and it is still the repo's
    if reason := _protected(out) or _protected(Path(output_dir).expanduser().absolute()):
        raise RecipeError(
            f"refusing output_dir {output_dir}: it is {reason}; name a folder of its own, e.g. outputs/<model>/<stage>"
        )
    for name, path in inputs.items():
        if out == path or out in path.parents:
            raise RecipeError(
                f"refusing output_dir {output_dir}: it holds this stage's input {name} ({path}); "
                "write the output somewhere else"
            )
    for path in (out, out.with_name(out.name + ".partial")):
        if path.exists() and not path.is_dir():
            raise RecipeError(f"output_dir {path} is a file; name a folder")
        if path.is_dir() and any(path.iterdir()) and not is_ours(path) and not overwrite:
            raise RecipeError(
                f"output_dir {path} holds files rlhf-recipes did not write; choose another folder, or "
                "pass --overwrite_output_dir true to replace it"
            )
    return out


def _lock(directory: Path) -> int:
    """An exclusive lock held until the process ends (a crash or kill -9 releases it too)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RecipeError(f"another run is writing {directory} right now; wait for it to finish or stop it") from None
    return fd


def _write_manifest(directory: Path, stage: str, **extra) -> None:
    manifest = {"written_by": "rlhf-recipes", "stage": stage, "command": command_line(), **extra}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def settings_of(*configs) -> dict:
    """The parsed configs as JSON values: what a resumed run must share with the run it continues."""
    merged = {}
    for config in configs:
        merged.update(dataclasses.asdict(config))
    return {k: v for k, v in json.loads(json.dumps(merged, default=str)).items() if k not in RESUMABLE_CHANGES}


def _changed(before: dict, now: dict) -> list[str]:
    keys = sorted((set(before) | set(now)) - RESUMABLE_CHANGES)  # a manifest from an older version may hold some
    return [f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in keys if before.get(k) != now.get(k)]


def checkpoints(directory: Path) -> list[Path]:
    """The `checkpoint-N` folders in `directory`, oldest first."""
    found = [p for p in directory.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def is_complete(checkpoint: Path) -> bool:
    return (checkpoint / CHECKPOINT_DONE).is_file()


def last_checkpoint(directory: str | Path) -> str | None:
    """The newest complete checkpoint in a training stage's partial directory: what `train()` resumes from."""
    done = [p for p in checkpoints(Path(directory)) if is_complete(p)]
    return str(done[-1]) if done else None


def _prepare_partial(partial: Path, stage: str, settings: dict | None, resume: bool) -> None:
    """Clear a dead run's leftovers, keeping its complete checkpoints (and its curves) when this run resumes it."""
    previous = json.loads((partial / MANIFEST).read_text()) if (partial / MANIFEST).is_file() else {}
    keep = [p for p in checkpoints(partial) if is_complete(p)] if resume and previous.get("stage") == stage else []
    if keep and settings is not None and (changes := _changed(previous.get("settings", {}), settings)):
        raise RecipeError(
            f"{partial} holds checkpoints of a run with other settings ({'; '.join(changes[:3])}); "
            "run again with the same settings to resume it, or pass --resume false to start over"
        )
    for child in partial.iterdir():  # the dead run's leftovers, written by a stage (checked by the caller)
        if child in keep or child.name == MANIFEST or (keep and child.name in (SNAPSHOTS, RUNS)):
            continue
        if child.name.startswith(CHECKPOINT_PREFIX) and resume:
            print(f"removing {child.name}: it was still being written when the run stopped", file=sys.stderr)
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    if keep:
        print(f"resuming from {keep[-1].name} in {partial}", file=sys.stderr)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextmanager
def staged_output(
    final_dir: str | Path,
    *,
    stage: str,
    inputs: dict[str, Path] | None = None,
    overwrite: bool = False,
    settings: dict | None = None,
    resume: bool = False,
) -> Iterator[Path]:
    """Build a stage's output in `<dir>.partial` and move it into place only when the stage succeeds.

    A run that fails leaves nothing, unless `<dir>.partial` holds a complete checkpoint to resume from;
    never a directory that looks finished. What is refused, and why, is in the module docstring.
    With `resume`, the complete checkpoints of a dead run with the same `settings` are kept for `train()`.
    """
    final_dir = Path(final_dir)
    check_output_dir(final_dir, inputs or {}, overwrite)
    partial = final_dir.with_name(final_dir.name + ".partial")
    state = PartialState()
    lock = None
    try:
        if state.is_main_process:
            partial.mkdir(parents=True, exist_ok=True)
            lock = _lock(partial)
            _prepare_partial(partial, stage, settings, resume)
            _write_manifest(partial, stage, started=_now(), settings=settings)
        state.wait_for_everyone()
        yield partial
        state.wait_for_everyone()
        if state.is_main_process:
            check_output_dir(final_dir, inputs or {}, overwrite)  # something may have appeared meanwhile
            manifest = json.loads((partial / MANIFEST).read_text())
            _write_manifest(partial, stage, started=manifest["started"], finished=_now(), settings=settings)
            if final_dir.exists():
                shutil.rmtree(final_dir)
            partial.rename(final_dir)
        state.wait_for_everyone()
    except BaseException:
        if lock is not None and not any(map(is_complete, checkpoints(partial))):
            shutil.rmtree(partial)  # nothing to resume from (bad input, a full disk): leave no trace
        raise
    finally:
        if lock is not None:
            os.close(lock)


@contextmanager
def staged_training_output(training_args, *configs, stage: str, options: TrainingOutputArguments) -> Iterator[Path]:
    """`staged_output` for a Trainer: its checkpoints and final save go to the partial directory.

    `configs` are all the stage's parsed configs: the inputs they name are protected, and their settings
    must match a dead run's for its checkpoints to be resumed. The trainer must get `CheckpointCompleted`.
    With `push_to_hub`, the finished folder is pushed once it is in place; a run that fails pushes nothing.
    """
    push = take_hub_push(training_args)
    final_dir = training_args.output_dir
    with staged_output(
        final_dir,
        stage=stage,
        inputs=input_paths(training_args, *configs),
        overwrite=options.overwrite_output_dir,
        settings=settings_of(training_args, *configs),
        resume=options.resume,
    ) as out:
        training_args.output_dir = str(out)
        try:
            yield out
        finally:
            training_args.output_dir = final_dir
    if push:
        push_folder(Path(final_dir), push, stage)


@dataclass(frozen=True)
class HubPush:
    """Where a finished folder goes: kept here, so that the Trainer never sees push_to_hub or the token."""

    repo_id: str
    private: bool | None
    token: str | None


NOT_PUSHED = [f"{CHECKPOINT_PREFIX}-*", f"{SNAPSHOTS}/*"]  # resumable state and the report's snapshots: local only


def take_hub_push(training_args) -> HubPush | None:
    """The push a training config asks for, checked before any work and taken out of the Trainer's hands.

    The Trainer would create the repo as it is built and push checkpoints from the partial folder. The
    token is cleared from the arguments, so that no file of the run (training_args.bin) holds it.
    """
    token, training_args.hub_token = training_args.hub_token, None
    if not training_args.push_to_hub:
        return None
    repo_id = training_args.hub_model_id
    if not repo_id:
        raise RecipeError("push_to_hub needs hub_model_id, the repo to push to: set it, e.g. your-name/tiny-sft")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise RecipeError(f"hub_model_id {repo_id!r} is not a Hub repo id: {first_line(e)}") from None
    if training_args.hub_revision or training_args.hub_strategy in ("checkpoint", "all_checkpoints"):
        raise RecipeError(
            "push_to_hub pushes the finished output_dir once, to the repo's main branch; unset hub_revision and "
            "hub_strategy checkpoint/all_checkpoints"
        )
    training_args.push_to_hub = False
    return HubPush(repo_id, training_args.hub_private_repo, token)


def push_folder(folder: Path, push: HubPush, stage: str) -> None:
    """Upload a finished stage folder, without its checkpoints and snapshots, from the main process."""
    if not PartialState().is_main_process:
        return
    api = HfApi(token=push.token)
    try:
        api.create_repo(push.repo_id, private=push.private, exist_ok=True)
        api.upload_folder(
            folder_path=folder,
            repo_id=push.repo_id,
            ignore_patterns=NOT_PUSHED,
            commit_message=f"rlhf-recipes {stage} stage",
        )
    except Exception as e:  # HTTP, network and token errors alike: the folder is safe and the push can be redone
        again = ["hf", "upload", push.repo_id, str(folder), *(["--private"] if push.private else [])]
        again += [option for pattern in NOT_PUSHED for option in ("--exclude", pattern)]
        raise RecipeError(
            f"{folder} is saved, but pushing it to {push.repo_id} failed ({first_line(e)}); push it again "
            f"with `{shlex.join(again)}`"
        ) from e
    print(f"pushed {folder} to {push.repo_id} on the Hub", file=sys.stderr)


def write_json(path: Path, data: dict) -> None:
    if PartialState().is_main_process:
        path.write_text(json.dumps(data, indent=2) + "\n")


HELDOUT_PROMPTS = "heldout_prompts.jsonl"  # prompts an RL stage held out of training: the report's, on a user's data


def write_jsonl(path: Path, rows: list[dict]) -> None:
    if PartialState().is_main_process:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))


CAUSAL_LM = '`AutoModelForCausalLM.from_pretrained` or `pipeline("text-generation")`'


def hub_repo_id(name: str | None) -> str | None:
    """The Hub repo `name` names (its @revision dropped), or None for a local path, which the Hub refuses in a card."""
    repo = (name or "").split("@")[0]
    if not repo or not looks_like_hub_id(repo):
        return None
    try:
        validate_repo_id(repo)
    except HFValidationError:  # a glob or a list of files
        return None
    return repo


def _provenance(base_model: str | None, datasets: list[str]) -> str:
    """What the folder started from, what it trained on, and the command that made it."""
    lines = [f"- base model: `{base_model}`\n"] if base_model else []
    lines += ["- datasets: " + ", ".join(f"`{name}`" for name in datasets) + "\n"] if datasets else []
    return "## How it was made\n\n" + "".join(lines) + f"\n```bash\n{command_line()}\n```\n\n"


def write_model_card(
    out: Path,
    title: str,
    summary: str,
    metrics: dict,
    load_with: str = CAUSAL_LM,
    *,
    base_model: str | None = None,
    datasets: Sequence[str | None] = (),
) -> None:
    """A README.md next to the weights, so the directory explains itself, and the Hub links it when pushed.

    The metadata names the base model and the datasets only where they are Hub repos; the text names them always.
    """
    if not PartialState().is_main_process:
        return
    datasets = [name for name in datasets if name]
    meta = ModelCardData(
        library_name="transformers",
        tags=["rlhf-recipes"],
        base_model=hub_repo_id(base_model),
        datasets=[repo for repo in map(hub_repo_id, datasets) if repo] or None,
    )
    rows = "\n".join(f"| {k} | {v} |" for k, v in metrics.items() if v is not None and not isinstance(v, (dict, list)))
    data = "".join(f"- {k}: {v}\n" for k, v in metrics.get("data", {}).items() if v is not None)
    out.joinpath("README.md").write_text(
        f"---\n{meta.to_yaml()}\n---\n\n# {title}\n\n{summary}\n\n"
        f"Made by rlhf-recipes. Load it with {load_with}.\n\n"
        + _provenance(base_model, datasets)
        + (f"## Data\n\n{data}\n" if data else "")
        + f"| metric | value |\n|---|---|\n{rows}\n"
    )


class Stopwatch:
    """Wall time since creation, in seconds rounded for metrics.json."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 1)
