"""The one stage runner: everything a training stage does around its trainer, written once.

A training script declares a `Stage` subclass (how it reads its data, which model, which trainer with
which settings, what it measures that others do not) and ends with `cli(MyStage.main)`. `main` parses
the YAML strictly (command-line overrides win), applies what `accelerate launch` decided, follows the
embedded world's extras, builds the output in `<output_dir>.partial` (resuming a dead run's complete
checkpoints), trains, saves, evaluates the saved model on the main process, and writes `metrics.json`
and the model card; with `push_to_hub` it pushes the finished folder.

The bench and the tests reach a stage the same way: `stage_of(script)` gives its Stage class,
`Stage.from_argv(argv)` a configured stage, `prepare()` its model and data, `trainer()` its trainer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from accelerate import PartialState
from transformers import set_seed
from trl import TrlParser

from ..compat import full_logits_on_cpu, package_checks_cached
from ..evaluation.judging import EvalArguments, evaluate_model, load_judging
from ..training.config import RecipeError, declared, parse
from ..training.cores import sharing_cores
from ..training.launch import apply_launch, peak_gpu_memory, rank_summary
from ..training.outputs import (
    CAUSAL_LM,
    Stopwatch,
    TrainingOutputArguments,
    last_checkpoint,
    staged_training_output,
    write_json,
    write_model_card,
)
from ..training.stability import StabilityWatch
from ..training.trainers import CheckpointCompleted, PolicySnapshots, ShareCores
from ..training.world_inputs import follow_world, world_record


class Stage:
    """A training stage's recipe. Subclasses set the class attributes and override the hooks they need."""

    name: ClassVar[str]  # the stage's name in manifests and messages: "sft"
    arguments: ClassVar[tuple[type, ...]]  # the script's own arguments, the trainer's config[, ModelConfig]
    world_options: ClassVar[dict[str, str]] = {}  # `auto` options that follow the dataset's world (world_inputs)
    title: ClassVar[str]  # of the model card
    summary: ClassVar[str] = ""
    load_with: ClassVar[str] = CAUSAL_LM

    def __init__(self, args, config, model_args=None) -> None:
        self.args, self.config, self.model_args = args, config, model_args
        self.world: Path | None = None
        self.data: dict = {"dataset": getattr(args, "dataset_name", None)}  # what it read: metrics.json's "data"

    @classmethod
    def from_argv(cls, argv: Sequence[str] | None = None) -> tuple[Stage, TrainingOutputArguments]:
        """The stage configured from `--config x.yaml` and overrides, launch applied, world extras followed."""
        parser = TrlParser((*cls.arguments, TrainingOutputArguments))
        *configs, output_args = parse(parser, apply_launch(parser, argv))
        stage = cls(*configs)
        stage.check()
        full_logits_on_cpu()  # TRL's fused LM head costs an SFT step 1.56x on a CPU (compat.py)
        package_checks_cached()  # accelerate reads peft's and DeepSpeed's METADATA files at every step
        stage.world = follow_world(stage.args, stage.args.dataset_name, **cls.world_options)
        return stage, output_args

    @classmethod
    def main(cls, argv: Sequence[str] | None = None) -> dict:
        """The script's entry point: run the stage into its output_dir and return its metrics."""
        stage, output_args = cls.from_argv(argv)
        configs = [c for c in (stage.args, stage.model_args) if c is not None]
        with (
            staged_training_output(stage.config, *configs, stage=stage.name, options=output_args) as out,
            sharing_cores(),
        ):
            metrics = stage.run(out)
        PartialState().print(stage.shown(metrics))
        return metrics

    def run(self, out: Path) -> dict:
        """Train into `out` (the staged output folder), save, evaluate, and write metrics.json and the card."""
        set_seed(self.config.seed)  # model inits (LoRA, score heads, from scratch) draw from the global RNG
        clock = Stopwatch()
        self.prepare()
        self.judging = load_judging(self.args) if isinstance(self.args, EvalArguments) else None
        self.before_training()
        trainer = self.trainer()
        trainer.add_callback(CheckpointCompleted())  # a checkpoint counts once the trainer has written all of it
        trainer.add_callback(StabilityWatch())  # RL stages: a warning line when an update's KL or entropy jumps
        trainer.add_callback(threads := ShareCores())  # jobs side by side split the cores between them
        if getattr(self.args, "snapshot_steps", 0):
            trainer.add_callback(PolicySnapshots(trainer, self.args.snapshot_steps))
        result = trainer.train(resume_from_checkpoint=last_checkpoint(out))
        metrics = {"data": self.data, **world_record(self.world, out), **self.measure(trainer, result)}
        metrics["ranks"] = rank_summary(self.trained_model(trainer))
        metrics["cpu_threads"] = sorted(threads.threads_used)
        self.save(trainer, out)
        if PartialState().is_main_process:
            metrics.update(self.evaluate(out))
        metrics["wall_time_s"] = clock.seconds
        metrics.update(peak_gpu_memory())
        write_json(out / "metrics.json", {**metrics, "log_history": trainer.state.log_history})
        write_model_card(
            out,
            self.title,
            self.card_summary(),
            self.card_metrics(metrics),
            self.load_with,
            base_model=self.base_model(),
            datasets=self.datasets(),
        )
        return metrics

    def judge(self, model) -> tuple[dict, list]:
        """The gold labeler's summary and judged answers of `model` on the held-out prompts, sampled as every
        stage samples them; empty without a world (a user's data) and off the main process."""
        return evaluate_model(model, self.tokenizer, self.judging, self.args, self.config.seed)

    # The hooks: what a recipe says about its stage.
    def check(self) -> None:
        """Refuse settings this stage cannot honour, before any work."""

    def prepare(self) -> None:
        """Load the model(s), tokenizer and data onto `self`."""
        raise NotImplementedError

    def before_training(self) -> None:
        """Measure what needs the untrained model (SFT judges the base model)."""

    def trainer(self, callbacks: Sequence = ()):
        """The stage's trainer over what `prepare` loaded; `callbacks` let the bench watch its steps."""
        raise NotImplementedError

    def optimizer(self, model):
        """The optimizer this recipe trains `model` with, when it brings its own (the bench's plain loop uses it
        too); None: the trainer's own (`optim`)."""
        return None

    def measure(self, trainer, result) -> dict:
        """Metrics from the trainer after training, on every process (collective calls belong here)."""
        return {}

    def trained_model(self, trainer):
        """The model whose weights every rank must agree on."""
        return trainer.model

    def save(self, trainer, out: Path) -> None:
        trainer.save_model(str(out))
        trainer.save_state()

    def evaluate(self, out: Path) -> dict:
        """Metrics of the saved model in `out`, on the main process (a sharded trainer's model cannot answer alone)."""
        return {}

    def base_model(self) -> str | None:
        return self.model_args.model_name_or_path if self.model_args else None

    def datasets(self) -> list[str | None]:
        return [self.args.dataset_name]

    def card_summary(self) -> str:
        return self.summary

    def card_metrics(self, metrics: dict) -> dict:
        return metrics

    def shown(self, metrics: dict) -> dict:
        """What the run prints when it ends: its metrics but the ranks' checksums and the data it read."""
        return {k: v for k, v in metrics.items() if k not in ("ranks", "data", "log_history")}


def stage_of(script: str | Path) -> type[Stage]:
    """The Stage a training script declares (its `cli(SomeStage.main)`), without importing the script."""
    entry = declared(script)
    owner = getattr(entry, "__self__", None)
    if not (isinstance(owner, type) and issubclass(owner, Stage)):
        raise RecipeError(f"{script} is not a training stage; it does not end with `cli(<Stage>.main)`")
    return owner
