"""Does the story hold across seeds? (`make sweep SEEDS=5`)

    python recipes/sweep.py --model tiny --seeds 5 --from_stage sft

For each seed k, every stage from `from_stage` on (sft: SFT, comparisons, reward model, PPO, report;
pretrain: pretraining too) runs as `make` runs it, with `--seed k`, into outputs/<model>/sweep/seed-<k>/;
a stage's inputs are its seed's own outputs, stages before `from_stage` are shared (linked from
outputs/<model>/). The seeds' reports become sweep.json, sweep.md and sweep.png in outputs/<model>/sweep:
every row's gold score, win rate, honesty and collapse check as mean, standard deviation and each seed's
value. A finished stage of a seed is kept, so a sweep that dies goes on where it stopped; a stage that dies
resumes from its own checkpoints.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from trl import TrlParser

from rlhf_recipes.evaluation import sweep
from rlhf_recipes.training.config import RecipeError, cli, parse
from rlhf_recipes.training.outputs import write_json

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


def make_parser() -> TrlParser:
    return TrlParser((SweepArguments,))


def stage_argv(args: SweepArguments, stage: str, seed_dir: Path, seed: int) -> list[str]:
    """`make <stage>`'s command with the seed, and every path into outputs/<model>/ moved into the seed's folder
    (a stage the sweep does not run stays shared: it is linked there)."""
    config = Path("recipes") / args.model / f"{stage}.yaml"
    shared = f"outputs/{args.model}"
    argv = ["--config", str(config), "--seed", str(seed)]
    for key, value in yaml.safe_load(config.read_text()).items():
        if isinstance(value, str) and (value == shared or value.startswith(shared + "/")):
            argv += [f"--{key}", str(seed_dir / value.removeprefix(shared).lstrip("/"))]
    if stage == "report" and not args.report_overopt:
        argv += ["--overopt_prompts", "0"]
    if stage == "ppo":
        argv += ["--snapshot_steps", "0"]  # each seed's policy is enough; snapshots are the report's curves
    launch = [str(Path(sys.executable).with_name("accelerate")), "launch", "--quiet"]
    launch += ["--config_file", f"accelerate_configs/{args.hw}.yaml"]
    launch += ["--num_processes", str(args.procs)] if args.procs else []
    return [*launch, f"recipes/{stage}.py", *argv]


def link_shared(args: SweepArguments, seed_dir: Path) -> None:
    """The stages before from_stage (and the tokenizer) as links to the shared ones, for the report to find."""
    seed_dir.mkdir(parents=True, exist_ok=True)
    for stage in ("tokenizer", *CHAIN[: CHAIN.index(args.from_stage)]):
        shared = Path("outputs") / args.model / stage
        if not (shared / "metrics.json").is_file() and not (shared / "tokenizer.json").is_file():
            raise RecipeError(
                f"{shared} is not finished; run `make all` first (the sweep starts at {args.from_stage})"
            )
        link = seed_dir / stage
        if not link.exists():
            link.symlink_to(shared.resolve(), target_is_directory=True)


def run_seed(args: SweepArguments, seed: int) -> dict:
    seed_dir = Path(args.output_dir) / f"seed-{seed}"
    link_shared(args, seed_dir)
    for stage in CHAIN[CHAIN.index(args.from_stage) :]:
        if (seed_dir / stage / "metrics.json").is_file() or (seed_dir / stage / "report.json").is_file():
            print(f"sweep: seed {seed} {stage}: done before, kept", flush=True)
            continue
        print(f"sweep: seed {seed} {stage} ...", flush=True)
        if subprocess.run(stage_argv(args, stage, seed_dir, seed)).returncode != 0:
            raise RecipeError(f"seed {seed}: {stage} failed (its error is above); run the sweep again to go on")
    return json.loads((seed_dir / "report" / "report.json").read_text())


def main(argv: Sequence[str] | None = None) -> dict:
    (args,) = parse(make_parser(), argv)
    if args.from_stage not in ("pretrain", "sft") or args.seeds < 1:
        raise RecipeError(
            f"from_stage must be pretrain or sft and seeds at least 1; got {args.from_stage}, {args.seeds}"
        )
    args.output_dir = args.output_dir or f"outputs/{args.model}/sweep"
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


if __name__ == "__main__":
    cli(main)
