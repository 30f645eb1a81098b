"""Stage 1: causal-LM pretraining of a GPT-2-style model on packed text (`make pretrain`).

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/pretrain.py \
        --config recipes/tiny/pretrain.yaml

Builds the model from the config's shape (from scratch), or continues any causal-LM checkpoint named
in `model_name_or_path`. At the end: held-out perplexity, greedy recall of the world's facts, and a
few sample continuations, all in `metrics.json` next to a standard Hugging Face model directory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain

from accelerate import PartialState
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    GPT2Config,
    GPT2LMHeadModel,
    Trainer,
    TrainingArguments,
    set_seed,
)
from trl import TrlParser

from rlhf_recipes.compat import CheckpointCompleted
from rlhf_recipes.training.config import RecipeError, cli, parse
from rlhf_recipes.training.launch import apply_launch, rank_summary
from rlhf_recipes.training.loading import HeldOutArguments, dataset_help, load_pretrained, load_splits, load_trained
from rlhf_recipes.training.outputs import (
    Stopwatch,
    TrainingOutputArguments,
    last_checkpoint,
    staged_training_output,
    write_json,
    write_model_card,
)
from rlhf_recipes.training.world_inputs import WORLD_FILE, follow_world, load_world, world_record
from rlhf_recipes.world.probes import fact_recall, question_continuations

# which of the world's extras this stage follows (`auto` options): the bench resolves them the same way
WORLD_OPTIONS = dict(world_file=WORLD_FILE)


@dataclass
class PretrainArguments(HeldOutArguments):
    dataset_name: str = field(default="data/world/pretrain", metadata={"help": dataset_help("`text`")})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_test_split: str = field(default="test", metadata={"help": "Held-out split for perplexity."})
    tokenizer_name_or_path: str = field(default="outputs/tiny/tokenizer", metadata={"help": "Tokenizer to use."})
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Continue pretraining this causal LM; if unset, build one from the shape below."},
    )
    n_layer: int = field(default=4, metadata={"help": "Transformer blocks (from-scratch model only)."})
    n_embd: int = field(default=128, metadata={"help": "Width (from-scratch model only)."})
    n_head: int = field(default=4, metadata={"help": "Attention heads (from-scratch model only)."})
    context_length: int = field(default=256, metadata={"help": "Tokens per packed training sequence."})
    dropout: float = field(
        default=0.0, metadata={"help": "Dropout of a from-scratch model; 0 lets a small model memorise facts faster."}
    )
    world_file: str | None = field(
        default="auto",
        metadata={
            "help": "World whose facts are probed after training. auto: the world of dataset_name if it is a "
            "`make data` dataset, else none; none: no probes; or a world.json path."
        },
    )


def make_parser() -> TrlParser:
    return TrlParser((PretrainArguments, TrainingArguments, TrainingOutputArguments))


def build_model(args: PretrainArguments, tokenizer):
    if args.model_name_or_path:
        model = load_pretrained(AutoModelForCausalLM, args.model_name_or_path)
        if model.get_input_embeddings().num_embeddings < len(tokenizer):
            raise RecipeError(
                f"tokenizer {args.tokenizer_name_or_path} has {len(tokenizer)} tokens but the model "
                f"embeds only {model.get_input_embeddings().num_embeddings}; use the model's tokenizer"
            )
        return model
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=args.context_length,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        resid_pdrop=args.dropout,
        embd_pdrop=args.dropout,
        attn_pdrop=args.dropout,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def packed_splits(args: PretrainArguments, tokenizer, seed: int) -> dict:
    """Documents joined by EOS and cut into full `context_length` blocks: no padding is trained on."""
    raw = load_splits(
        args.dataset_name,
        [args.dataset_train_split, args.dataset_test_split],
        [{"text"}],
        "run `make data` first or set dataset_name",
        held_out=(args.eval_split_ratio, seed),
    )
    context = args.context_length

    def pack(batch):
        ids = list(chain.from_iterable(tokenizer(t).input_ids + [tokenizer.eos_token_id] for t in batch["text"]))
        usable = len(ids) // context * context
        return {"input_ids": [ids[i : i + context] for i in range(0, usable, context)]}

    out = {}
    for name, split in raw.items():
        with PartialState().local_main_process_first():
            out[name] = split.map(pack, batched=True, batch_size=1000, remove_columns=split.column_names)
        if len(out[name]) == 0:
            raise RecipeError(
                f"dataset {args.dataset_name} split {name!r} is shorter than one {context}-token "
                "block; lower context_length or add text"
            )
    return out


def build_trainer(args: PretrainArguments, training_args, model, tokenizer, splits: dict, callbacks=()) -> Trainer:
    """The stage's trainer; `make bench` times its steps (`callbacks` lets it watch them)."""
    return Trainer(
        model=model,
        args=training_args,
        train_dataset=splits[args.dataset_train_split],
        eval_dataset=splits[args.dataset_test_split],
        processing_class=tokenizer,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        callbacks=[CheckpointCompleted(), *callbacks],
    )


def train(args: PretrainArguments, training_args: TrainingArguments, out, world) -> dict:
    """Pretrain into `out` (the staged output directory) and measure what the base model learned."""
    clock = Stopwatch()
    tokenizer = load_pretrained(AutoTokenizer, args.tokenizer_name_or_path, "run `make tokenizer` first")
    splits = packed_splits(args, tokenizer, training_args.seed)
    probed = load_world(args.world_file) if args.world_file else None  # read now: a wrong path costs seconds
    set_seed(training_args.seed)  # the random init must not depend on what ran before in this process
    model = build_model(args, tokenizer)
    trainer = build_trainer(args, training_args, model, tokenizer, splits)
    result = trainer.train(resume_from_checkpoint=last_checkpoint(out))
    eval_loss = trainer.evaluate()["eval_loss"]
    trained_tokens = (
        result.global_step
        * training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * trainer.accelerator.num_processes
        * args.context_length
    )
    metrics = {
        "data": {
            "dataset": args.dataset_name,
            **{f"{name}_blocks": len(split) for name, split in zip(("train", "eval"), splits.values())},
        },
        **world_record(world, out),
        "parameters": model.num_parameters(),
        "train_loss": round(result.training_loss, 4),
        "eval_loss": round(eval_loss, 4),
        "perplexity": round(math.exp(eval_loss), 3),
        "trained_tokens": trained_tokens,
        "tokens_per_second": round(trained_tokens / result.metrics["train_runtime"]),
    }
    metrics["ranks"] = rank_summary(trainer.model)
    trainer.save_model(str(out))
    trainer.save_state()
    if probed and trainer.accelerator.is_main_process:
        saved = load_trained(AutoModelForCausalLM, out)
        metrics.update(fact_recall(saved, tokenizer, probed))
        metrics["question_continuations"] = question_continuations(saved, tokenizer, probed)
    metrics["wall_time_s"] = clock.seconds
    write_json(out / "metrics.json", metrics)
    write_model_card(
        out,
        "Base model (pretraining)",
        f"A causal LM {'further ' if args.model_name_or_path else ''}pretrained on "
        f"{'the rlhf-recipes embedded world' if world else args.dataset_name} "
        f"({len(splits[args.dataset_train_split])} blocks of {args.context_length} tokens). "
        "It continues text; it does not follow instructions.",
        metrics,
        base_model=args.model_name_or_path,
        datasets=[args.dataset_name],
    )
    return metrics


def main(argv: Sequence[str] | None = None) -> dict:
    parser = make_parser()
    args, training_args, output_args = parse(
        parser, apply_launch(parser, argv)
    )  # the accelerate config picks the hardware
    world = follow_world(args, args.dataset_name, **WORLD_OPTIONS)
    with staged_training_output(training_args, args, stage="pretrain", options=output_args) as out:
        metrics = train(args, training_args, out, world)
    for line in metrics.get("recall_examples", []) + metrics.get("question_continuations", []):
        print("  " + line.replace("\n", "\\n"))
    PartialState().print({k: v for k, v in metrics.items() if not isinstance(v, list)})
    return metrics


if __name__ == "__main__":
    cli(main)
