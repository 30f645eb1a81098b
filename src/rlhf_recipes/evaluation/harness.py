"""`make eval`: lm-evaluation-harness over every stage's model, and a table of what each stage kept.

Each row of eval.yaml (`stages`) is a model folder and how it is asked: `text` (the base model: every question
as the pretraining text's Q&A pages ask it, no chat template) or `chat` (the stage's own chat template,
lm-eval's `apply_chat_template`). On a `make data` world the harness runs the world's tasks (recipes/tasks/:
its held-out questions as generation with exact match, as log-likelihood multiple choice, and its unknown
entities scored on "I don't know"), in every language the world is written in; `tasks` adds standard harness
tasks (hellaswag, arc_easy: their datasets come from the Hub), asked the same plain way of every stage so
that the differences are the stages'. Everything lands in output_dir at once, or not at all: the question
files, lm-eval's results per stage, eval.json and the table, eval.md.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..training.config import RecipeError
from ..training.cores import sharing_cores
from ..training.loading import load_splits, looks_like_hub_id
from ..training.outputs import Stopwatch, input_paths, staged_output
from ..training.world_inputs import WORLD_FILE, follow_world, load_world, world_of
from .policies import Policy, read_policies
from .world_tasks import QUESTIONS_KEY, question_rows, write_questions

PROMPTING = ("text", "chat")
WORLD_OPTIONS = {"eval_prompts": "eval_prompts", "world_file": WORLD_FILE}  # `auto`: the stages' world
QUESTIONS = "questions"
ADAPTER = "adapter_config.json"  # a LoRA adapter's folder holds this instead of a model's config.json


@dataclass
class HarnessArguments:
    outputs_dir: str = field(
        default="outputs/tiny", metadata={"help": "Folder holding every stage's output; the paths below are in it."}
    )
    stages: list[dict] = field(
        default_factory=list,
        metadata={
            "help": "The rows, in order: {name, path, prompt: text|chat, label}; a row without a model folder is "
            "left out. The first row is the one the others are compared with. YAML only."
        },
    )
    stage: str | None = field(
        default=None,
        metadata={
            "help": "Only this row (its name), or a model folder asked with its chat template; none: every row."
        },
    )
    world_file: str | None = field(
        default="auto",
        metadata={"help": "The world whose questions become tasks. auto: the world the stages trained on; none: off."},
    )
    eval_prompts: str | None = field(
        default="auto",
        metadata={"help": "Its held-out prompts (kinds fact and unknown are asked). auto: the world's eval_prompts."},
    )
    include_path: str = field(
        default="recipes/tasks", metadata={"help": "The folder of the world's task YAMLs (lm-eval's --include_path)."}
    )
    tasks: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Standard lm-eval tasks besides the world's, e.g. hellaswag arc_easy (datasets from the Hub)."
        },
    )
    num_choices: int = field(default=4, metadata={"help": "Candidate values per multiple-choice question."})
    batch_size: int = field(default=16, metadata={"help": "lm-eval's batch size."})
    offline: bool = field(
        default=True,
        metadata={"help": "Set HF_HUB_OFFLINE and HF_DATASETS_OFFLINE for the run: nothing reaches a hub."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of the candidate values and of lm-eval."})
    output_dir: str = field(default="outputs/tiny/eval", metadata={"help": "Where the results are written."})


def model_kind(folder: Path) -> str | None:
    """What a folder holds, by its config: a causal LM or a LoRA adapter on one (None), else a phrase naming what
    it is instead."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if (folder / ADAPTER).is_file():
        task = json.loads((folder / ADAPTER).read_text()).get("task_type")
        return None if task == "CAUSAL_LM" else f"a {task} adapter, not a causal language model's"
    if not (folder / "config.json").is_file():
        return "no model (no config.json)"
    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    architectures = json.loads((folder / "config.json").read_text()).get("architectures") or ["no architecture"]
    return None if causal & set(architectures) else f"a {architectures[0]}, not a causal language model"


def model_args(folder: Path) -> dict:
    """lm-eval's Hugging Face model arguments for a stage folder: the folder; for a LoRA adapter (a stage trained
    with use_peft), its base with the adapter on it."""
    if (folder / ADAPTER).is_file():
        base = json.loads((folder / ADAPTER).read_text())["base_model_name_or_path"]
        return {"pretrained": base, "peft": str(folder), "tokenizer": str(folder)}
    return {"pretrained": str(folder)}


def is_hub_model(args: HarnessArguments, path: str) -> bool:
    """A row whose path is a Hub id ("openai-community/gpt2": a real recipe's base model), not a folder here."""
    return "/" in path and looks_like_hub_id(path) and not (Path(args.outputs_dir) / path).exists()


def where(args: HarnessArguments, row: Policy) -> Path:
    """The row's model: its folder in outputs_dir, or its Hub id."""
    return Path(row.path) if is_hub_model(args, row.path) else Path(args.outputs_dir) / row.path


def checked(args: HarnessArguments, row: Policy) -> Policy:
    """The row, if its folder holds a causal LM (a Hub model is taken as named); else one line naming what is
    wrong and what to do."""
    folder = where(args, row)
    if is_hub_model(args, row.path):
        return row
    if not folder.is_dir():
        raise RecipeError(f"{folder} not found; run `make {folder.name}` first")
    if kind := model_kind(folder):
        raise RecipeError(f"{folder} holds {kind}: lm-eval reads causal LMs only; name a policy stage instead")
    return row


def chosen_rows(args: HarnessArguments) -> list[Policy]:
    """The rows to evaluate, checked before any work: `stage` alone, or every row whose folder exists."""
    rows = read_policies(args.stages, "stage", PROMPTING)
    if any(row.best_of != 1 for row in rows):
        raise RecipeError("eval rows take no best_of: the harness scores a model, not a pick among its answers")
    if args.stage:
        named = {row.name: row for row in rows}
        if args.stage not in named and not (Path(args.outputs_dir) / args.stage).is_dir():
            raise RecipeError(
                f"stage {args.stage} is neither a row of stages ({', '.join(named)}) nor a folder in "
                f"{args.outputs_dir}; name one of them"
            )
        return [checked(args, named.get(args.stage) or Policy(Path(args.stage).name, args.stage, "chat"))]
    present = [row for row in rows if is_hub_model(args, row.path) or where(args, row).is_dir()]
    for row in rows:
        if row not in present:
            print(f"leaving out {row.name}: {where(args, row)} is not there (`make {row.path}`)")
    if not present:
        raise RecipeError(f"no stage of eval.yaml is in {args.outputs_dir}; run `make all` first")
    return [checked(args, row) for row in present]


def world_questions(args: HarnessArguments, rows: list[Policy]) -> dict[str, dict[str, list]]:
    """{lang: {facts, unknown}} from the world the stages trained on (none without a world)."""
    folders = [str(where(args, row)) for row in rows]
    follow_world(args, next((f for f in folders if world_of(f)), folders[0]), **WORLD_OPTIONS)
    if not (args.world_file and args.eval_prompts):
        return {}
    eval_rows = load_splits(args.eval_prompts, ["test"], [{"prompt"}], "set eval_prompts, or none")["test"]
    return question_rows(load_world(args.world_file), eval_rows.to_list(), args.num_choices, args.seed)


def go_offline() -> None:
    """No hub from here on: for this process's libraries (they read the variables when imported) and its children."""
    import datasets
    import huggingface_hub

    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    huggingface_hub.constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True


def world_groups(languages, prompting: str) -> list[str]:
    """The task groups of recipes/tasks for the world's languages, in the row's form (world_en, world_en_text)."""
    return [f"world_{lang}" + ("_text" if prompting == "text" else "") for lang in languages]


def run_harness(lm, tasks: list[str], task_manager, chat: bool, seed: int) -> dict:
    from lm_eval import simple_evaluate

    seeds = {name: seed for name in ("random_seed", "numpy_random_seed", "torch_random_seed", "fewshot_random_seed")}
    return simple_evaluate(model=lm, tasks=tasks, task_manager=task_manager, apply_chat_template=chat, **seeds)


def write_results(folder: Path, name: str, results: dict, partial: Path) -> None:
    """lm-eval's results as its CLI writes them: the numbers and configs, and each task's answers in a JSON-lines
    file beside them; a path into the partial output (the question files) is written as where it will be."""
    from lm_eval.utils import handle_non_serializable

    def dump(value) -> str:
        text = json.dumps(value, default=handle_non_serializable, ensure_ascii=False)
        return text.replace(str(partial), str(partial.with_name(partial.name.removesuffix(".partial"))))

    folder.mkdir(parents=True, exist_ok=True)
    samples = results.pop("samples", {})
    (folder / f"{name}.json").write_text(json.dumps(json.loads(dump(results)), indent=2, ensure_ascii=False) + "\n")
    for task, rows in samples.items():
        (folder / f"samples_{task}.jsonl").write_text("".join(dump(row) + "\n" for row in rows))


def evaluate_stage(args: HarnessArguments, row: Policy, groups: list[str], task_manager, out: Path) -> dict:
    """One stage through the harness: its world tasks asked its way, the standard tasks asked plainly."""
    from accelerate import PartialState
    from lm_eval.models.huggingface import HFLM

    clock = Stopwatch()
    device = str(PartialState().device)
    lm = HFLM(**model_args(where(args, row)), device=device, batch_size=args.batch_size)
    found = {}
    for kind, tasks, chat in (("world", groups, row.prompt == "chat"), ("standard", args.tasks, False)):
        if tasks:
            results = run_harness(lm, tasks, task_manager, chat, args.seed)
            results["chat_template"] = lm.chat_template(chat) if chat else None  # as lm-eval's CLI records it
            write_results(out / row.name, kind, results, out)
            found |= results["results"]
    return {"label": row.title, "path": row.path, "prompt": row.prompt, "results": found, "wall_time_s": clock.seconds}


def scores(results: dict) -> dict[str, dict]:
    """{"task metric": {value, stderr}} for every metric lm-eval reports ("acc,none": the metric, then its filter)."""
    found = {}
    for task, numbers in results.items():
        for key, value in numbers.items():
            if "," in key and "_stderr," not in key:
                stderr = numbers.get(key.replace(",", "_stderr,", 1))
                found[f"{task} {key.split(',')[0]}"] = {"value": value, "stderr": stderr}
    return found


def cell(score: dict | None, first: dict | None) -> str:
    if score is None:
        return "—"
    text = f"{score['value']:.3f}" + (f" ± {score['stderr']:.3f}" if isinstance(score["stderr"], float) else "")
    return text + (f" ({score['value'] - first['value']:+.3f})" if first and first is not score else "")


def table(report: dict) -> str:
    """eval.md: a row per stage, a column per task and metric, each value with its standard error and its
    difference to the first row's (the base model's: what the later stages cost or kept of it)."""
    stages = report["stages"]
    columns = list(dict.fromkeys(column for stage in stages.values() for column in stage["scores"]))
    first = next(iter(stages.values()))["scores"]
    lines = [
        f"# lm-evaluation-harness on every stage ({report['outputs_dir']})",
        "",
        f"lm_eval {report['lm_eval']}, greedy, zero-shot. Each cell: the metric ± its standard error (difference "
        f"to the first row). Multiple choice among {report['num_choices']} values: chance "
        f"{1 / report['num_choices']:.3f}. {report['wall_time_s']} s in all.",
        *([f"The report of the same stages: [{report['report']}]({report['report']})."] if report["report"] else []),
        "",
        "| stage | asked | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for stage in stages.values():
        values = [cell(stage["scores"].get(c), first.get(c)) for c in columns]
        lines.append(f"| {stage['label']} | {stage['prompt']} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def beside_the_report(args: HarnessArguments) -> str | None:
    """The report of the same outputs (`make report`'s, or `make methods`'), relative to output_dir, if written."""
    for name in ("methods", "report"):
        if (report := Path(args.outputs_dir) / name / "report.md").is_file():
            return os.path.relpath(report, args.output_dir)
    return None


def run_eval(args: HarnessArguments, overwrite: bool) -> dict:
    """Every chosen stage through the harness, into output_dir: questions/, <stage>/, eval.json, eval.md."""
    import lm_eval
    from accelerate import PartialState
    from lm_eval.tasks import TaskManager

    clock = Stopwatch()
    if PartialState().num_processes > 1:
        raise RecipeError("make eval runs in one process; use HW=cpu or HW=single_gpu, without PROCS")
    rows = chosen_rows(args)  # fails on a missing or non-LM stage before any work
    questions = world_questions(args, rows)
    if not questions and not args.tasks:
        raise RecipeError("nothing to evaluate: no world (world_file none) and no tasks; name tasks or a world")
    if args.offline:
        go_offline()
    with (
        staged_output(args.output_dir, stage="eval", inputs=input_paths(args), overwrite=overwrite) as out,
        sharing_cores(),
    ):
        write_questions(questions, out / QUESTIONS)
        task_manager = TaskManager(  # lm-eval's own tasks only when named: indexing them all takes seconds
            include_path=args.include_path,
            include_defaults=bool(args.tasks),
            metadata={QUESTIONS_KEY: str(out / QUESTIONS)},
        )
        stages = {}
        for row in rows:
            stage = evaluate_stage(args, row, world_groups(questions, row.prompt), task_manager, out)
            stages[row.name] = stage | {"scores": scores(stage.pop("results"))}
        report = {
            "outputs_dir": args.outputs_dir,
            "lm_eval": lm_eval.__version__,
            "num_choices": args.num_choices,
            "questions": {
                lang: {kind: len(found) for kind, found in kinds.items()} for lang, kinds in questions.items()
            },
            "stages": stages,
            "report": beside_the_report(args),
            "wall_time_s": clock.seconds,
        }
        (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / "eval.md").write_text(table(report))
    print((Path(args.output_dir) / "eval.md").read_text())
    return report
