"""Running the sweep (`make sweep`, `make headtohead`): every stage from `from_stage` on, once per seed, each
seed in its own folder, run as `make` runs it (on one CPU process in this process, the imports paid once, as
in `make all`); `evaluation.sweep` sums the seeds' reports up.

With `methods` beyond PPO (the head-to-head), every method trains from the same seed's SFT model and reward
model, and the seed's report is `methods.yaml`'s: one row per method, and with `report_overopt` the
frontier curves (gold against KL) along every method's snapshots beside best-of-n's."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..evaluation import sweep
from ..training import stability
from ..training.config import RecipeError
from ..training.outputs import write_json
from ..training.recipes import outputs_root, recipe_config
from .command import stage_command
from .in_process import in_one_process, run_stage

BEFORE_RL = ("pretrain", "sft", "compare", "reward")
METHODS = ("ppo", "dpo", "rloo", "grpo")  # every policy-training stage after the reward model


@dataclass
class SweepArguments:
    model: str = field(default="tiny", metadata={"help": "Recipe folder under recipes/ whose stage YAMLs run."})
    seeds: int = field(default=5, metadata={"help": "Number of seeds: 0, 1, ..., seeds-1."})
    from_stage: str = field(
        default="sft", metadata={"help": "First stage run per seed: sft, or pretrain for the whole chain."}
    )
    hw: str = field(default="cpu", metadata={"help": "accelerate_configs/<hw>.yaml for every stage."})
    procs: int | None = field(default=None, metadata={"help": "Processes per stage (accelerate's num_processes)."})
    methods: list[str] = field(
        default_factory=lambda: ["ppo"],
        metadata={
            "help": f"Policy-training stages per seed after the reward model: any of {', '.join(METHODS)}, or all. "
            "More than ppo: each seed's report is methods.yaml's, a row per method."
        },
    )
    report_overopt: bool = field(
        default=False,
        metadata={"help": "Draw the over-optimisation and frontier curves in every seed's report (slower)."},
    )
    rl_row: str = field(default="ppo", metadata={"help": "The report row the goals are measured on."})
    output_dir: str | None = field(
        default=None, metadata={"help": "Where seed-<k>/ and sweep.* go; unset: outputs/<model>/sweep."}
    )


def chain(args: SweepArguments) -> tuple[str, ...]:
    """The stages each seed runs, in order, from `from_stage` to its report."""
    stages = (*BEFORE_RL, *args.methods, report_stage(args))
    return stages[stages.index(args.from_stage) :]


def report_stage(args: SweepArguments) -> str:
    return "report" if list(args.methods) == ["ppo"] else "methods"


def seed_args(args: SweepArguments, stage: str, seed_dir: Path, seed: int) -> list[str]:
    """What a seed adds to `make <stage>`'s command: the seed, and every path into outputs/<model>/ moved into
    the seed's folder (a stage the sweep does not run stays shared: it is linked there)."""
    shared = outputs_root(args.model)
    argv = ["--seed", str(seed)]
    for key, value in recipe_config(args.model, stage).items():
        if isinstance(value, str) and (value == shared or value.startswith(shared + "/")):
            argv += [f"--{key}", str(seed_dir / value.removeprefix(shared).lstrip("/"))]
    if stage == report_stage(args):
        argv += ["--overopt_runs", *args.methods] if args.report_overopt else ["--overopt_prompts", "0"]
    if stage in METHODS and not args.report_overopt:
        argv += ["--snapshot_steps", "0"]  # each seed's policy is enough; snapshots are the report's curves
    return argv


def seed_command(args: SweepArguments, stage: str, seed_dir: Path, seed: int) -> list[str]:
    """`make <stage>`'s launch command for one seed."""
    return stage_command(args.model, stage, args.hw, args.procs, seed_args(args, stage, seed_dir, seed))


def link_shared(args: SweepArguments, seed_dir: Path) -> None:
    """The stages before from_stage (and the tokenizer) as links to the shared ones, for the report to find."""
    seed_dir.mkdir(parents=True, exist_ok=True)
    for stage in ("tokenizer", *BEFORE_RL[: BEFORE_RL.index(args.from_stage)]):
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
    for stage in chain(args):
        if (seed_dir / stage / "metrics.json").is_file() or (seed_dir / stage / "report.json").is_file():
            print(f"sweep: seed {seed} {stage}: done before, kept", flush=True)
            continue
        print(f"sweep: seed {seed} {stage} ...", flush=True)
        try:
            run_stage(seed_command(args, stage, seed_dir, seed), in_one_process(args.hw, args.procs))
        except RecipeError as e:
            raise RecipeError(f"seed {seed}, {stage}: {e} (the sweep goes on from there when run again)") from None
    return json.loads((seed_dir / report_stage(args) / "report.json").read_text())


def stability_by_seed(args: SweepArguments) -> dict[str, list[dict]]:
    """Each method's per-update stability summary (stability.summarize), one per seed, in seed order."""
    seeds = [Path(args.output_dir) / f"seed-{seed}" for seed in range(args.seeds)]
    return {m: [stability.summarize(training_log(d / m)) for d in seeds] for m in args.methods}


def training_log(stage_dir: Path) -> list[dict]:
    """A finished stage's log_history (metrics.json keeps it); empty when the stage left none."""
    metrics = stage_dir / "metrics.json"
    return json.loads(metrics.read_text()).get("log_history", []) if metrics.is_file() else []


def run_sweep(args: SweepArguments) -> dict:
    """Every seed's chain, then the spread of their reports: sweep.json, sweep.md and sweep.png."""
    if args.from_stage not in ("pretrain", "sft") or args.seeds < 1:
        raise RecipeError(
            f"from_stage must be pretrain or sft and seeds at least 1; got {args.from_stage}, {args.seeds}"
        )
    args.methods = list(METHODS) if list(args.methods) == ["all"] else list(args.methods)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown or not args.methods:
        raise RecipeError(f"methods {unknown or 'none'}: choose from {', '.join(METHODS)}, or all")
    args.output_dir = args.output_dir or f"{outputs_root(args.model)}/sweep"
    start = time.time()
    reports = {seed: run_seed(args, seed) for seed in range(args.seeds)}
    stage_seconds = sum(r["wall_time_s"].get(stage) or 0 for r in reports.values() for stage in chain(args))
    summary = sweep.summarize(reports, stability_by_seed(args)) | {
        "from_stage": args.from_stage,
        "stage_time_s": round(stage_seconds),  # the seeds' stages themselves, whenever they ran
        "this_run_s": round(time.time() - start),  # this invocation, stage start-ups included
    }
    out = Path(args.output_dir)
    goals = sweep.goals(summary, args.rl_row, args.model)
    sweep.plot(summary, out / "sweep.png")
    if any(r.get("overoptimization") for r in reports.values()):
        sweep.plot_frontier(summary, out / "frontier.png")
    write_json(out / "sweep.json", summary | {"goals": goals})
    (out / "sweep.md").write_text(sweep.markdown(summary, goals, "sweep.png"))
    print((out / "sweep.md").read_text())
    return summary
