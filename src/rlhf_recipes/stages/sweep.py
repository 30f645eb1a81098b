"""Running the sweep (`make sweep`): every stage from `from_stage` on, once per seed, launched as `make`
launches it, each seed in its own folder; `evaluation.sweep` sums the seeds' reports up."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..evaluation import sweep
from ..training.config import RecipeError
from ..training.outputs import write_json
from ..training.recipes import outputs_root, recipe_config
from .command import stage_command

CHAIN = ("pretrain", "sft", "compare", "reward", "ppo", "report")


@dataclass
class SweepArguments:
    model: str = field(default="tiny", metadata={"help": "Recipe folder under recipes/ whose stage YAMLs run."})
    seeds: int = field(default=5, metadata={"help": "Number of seeds: 0, 1, ..., seeds-1."})
    from_stage: str = field(
        default="sft", metadata={"help": "First stage run per seed: sft, or pretrain for the whole chain."}
    )
    hw: str = field(default="cpu", metadata={"help": "accelerate_configs/<hw>.yaml for every stage."})
    procs: int | None = field(default=None, metadata={"help": "Processes per stage (accelerate's num_processes)."})
    report_overopt: bool = field(
        default=False, metadata={"help": "Draw the over-optimisation curves in every seed's report (slower)."}
    )
    rl_row: str = field(default="ppo", metadata={"help": "The report row the goals are measured on."})
    output_dir: str | None = field(
        default=None, metadata={"help": "Where seed-<k>/ and sweep.* go; unset: outputs/<model>/sweep."}
    )


def seed_args(args: SweepArguments, stage: str, seed_dir: Path, seed: int) -> list[str]:
    """What a seed adds to `make <stage>`'s command: the seed, and every path into outputs/<model>/ moved into
    the seed's folder (a stage the sweep does not run stays shared: it is linked there)."""
    shared = outputs_root(args.model)
    argv = ["--seed", str(seed)]
    for key, value in recipe_config(args.model, stage).items():
        if isinstance(value, str) and (value == shared or value.startswith(shared + "/")):
            argv += [f"--{key}", str(seed_dir / value.removeprefix(shared).lstrip("/"))]
    if stage == "report" and not args.report_overopt:
        argv += ["--overopt_prompts", "0"]
    if stage == "ppo":
        argv += ["--snapshot_steps", "0"]  # each seed's policy is enough; snapshots are the report's curves
    return argv


def seed_command(args: SweepArguments, stage: str, seed_dir: Path, seed: int) -> list[str]:
    """`make <stage>`'s launch command for one seed."""
    return stage_command(args.model, stage, args.hw, args.procs, seed_args(args, stage, seed_dir, seed))


def link_shared(args: SweepArguments, seed_dir: Path) -> None:
    """The stages before from_stage (and the tokenizer) as links to the shared ones, for the report to find."""
    seed_dir.mkdir(parents=True, exist_ok=True)
    for stage in ("tokenizer", *CHAIN[: CHAIN.index(args.from_stage)]):
        shared = Path(outputs_root(args.model)) / stage
        if not (shared / "metrics.json").is_file() and not (shared / "tokenizer.json").is_file():
            raise RecipeError(
                f"{shared} is not finished; run `make all` first (the sweep starts at {args.from_stage})"
            )
        link = seed_dir / stage
        if not link.exists():
            link.symlink_to(shared.resolve(), target_is_directory=True)


def run_seed(args: SweepArguments, seed: int) -> dict:
    """One seed's chain, its finished stages kept; its report.json."""
    seed_dir = Path(args.output_dir) / f"seed-{seed}"
    link_shared(args, seed_dir)
    for stage in CHAIN[CHAIN.index(args.from_stage) :]:
        if (seed_dir / stage / "metrics.json").is_file() or (seed_dir / stage / "report.json").is_file():
            print(f"sweep: seed {seed} {stage}: done before, kept", flush=True)
            continue
        print(f"sweep: seed {seed} {stage} ...", flush=True)
        if subprocess.run(seed_command(args, stage, seed_dir, seed)).returncode != 0:
            raise RecipeError(f"seed {seed}: {stage} failed (its error is above); run the sweep again to go on")
    return json.loads((seed_dir / "report" / "report.json").read_text())


def run_sweep(args: SweepArguments) -> dict:
    """Every seed's chain, then the spread of their reports: sweep.json, sweep.md and sweep.png."""
    if args.from_stage not in ("pretrain", "sft") or args.seeds < 1:
        raise RecipeError(
            f"from_stage must be pretrain or sft and seeds at least 1; got {args.from_stage}, {args.seeds}"
        )
    args.output_dir = args.output_dir or f"{outputs_root(args.model)}/sweep"
    start = time.time()
    reports = {seed: run_seed(args, seed) for seed in range(args.seeds)}
    ran = CHAIN[CHAIN.index(args.from_stage) :]
    stage_seconds = sum(r["wall_time_s"].get(stage) or 0 for r in reports.values() for stage in ran)
    summary = sweep.summarize(reports) | {
        "from_stage": args.from_stage,
        "stage_time_s": round(stage_seconds),  # the seeds' stages themselves, whenever they ran
        "this_run_s": round(time.time() - start),  # this invocation, stage start-ups included
    }
    out = Path(args.output_dir)
    goals = sweep.goals(summary, args.rl_row)
    sweep.plot(summary, out / "sweep.png")
    write_json(out / "sweep.json", summary | {"goals": goals})
    (out / "sweep.md").write_text(sweep.markdown(summary, goals, "sweep.png"))
    print((out / "sweep.md").read_text())
    return summary
