"""Stage 1: causal-LM pretraining of a GPT-2-style model on packed text (`make pretrain`).

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/pretrain.py \
        --config recipes/tiny/pretrain.yaml

Builds the model from the config's shape (from scratch), or continues any causal-LM checkpoint named
in `model_name_or_path`. At the end: held-out perplexity, greedy recall of the world's facts, and a
few sample continuations, all in `metrics.json` next to a standard Hugging Face model directory.
"""

import rlhf_recipes  # noqa: F401  # isort: skip  (first: bitsandbytes loads on use, not with peft; compat.py)
import math
from dataclasses import dataclass, field

from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    GPT2Config,
    GPT2LMHeadModel,
    Trainer,
    TrainingArguments,
)

from rlhf_recipes.evaluation.probes import RecallAlongTraining, probe
from rlhf_recipes.stages.runner import Stage
from rlhf_recipes.training.config import RecipeError, cli
from rlhf_recipes.training.loading import HeldOutArguments, dataset_help, load_pretrained, load_trained
from rlhf_recipes.training.optimizers import MuonWithAdamW
from rlhf_recipes.training.packing import pretraining_splits
from rlhf_recipes.training.world_inputs import load_world


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
    muon_learning_rate: float = field(
        default=0.0,
        metadata={
            "help": "Muon for the blocks' weight matrices at this rate (scaled to match AdamW's update size), "
            "AdamW at learning_rate for the rest; 0: AdamW for every parameter."
        },
    )
    probe_steps: int = field(
        default=0,
        metadata={
            "help": "Probe fact recall every N steps (metrics.json's recall_along_training: the tokens and "
            "seconds to recall >= 0.95, the speedrun's measure); 0: only at the end. Needs a world."
        },
    )
    world_file: str | None = field(
        default="auto",
        metadata={
            "help": "World whose facts are probed after training. auto: the world of dataset_name if it is a "
            "`make data` dataset, else none; none: no probes; or a world.json path."
        },
    )


class Pretrain(Stage):
    name, arguments, title = "pretrain", (PretrainArguments, TrainingArguments), "Base model (pretraining)"
    world_options = dict(world_file="world.json")

    def prepare(self) -> None:
        args = self.args
        self.tokenizer = load_pretrained(AutoTokenizer, args.tokenizer_name_or_path, "run `make tokenizer` first")
        self.splits = self.packed_splits()
        self.probed = load_world(args.world_file) if args.world_file else None  # read now: a wrong path costs seconds
        if args.probe_steps and not self.probed:
            raise RecipeError("probe_steps needs a world whose facts to probe (world_file); set probe_steps: 0")
        self.model = self.build_model()
        blocks = zip(("train", "eval"), self.splits.values())
        self.data |= {f"{name}_blocks": len(split) for name, split in blocks}

    def build_model(self):
        """The model to continue (`model_name_or_path`), or a fresh GPT-2 of the configured shape."""
        args, tokenizer = self.args, self.tokenizer
        if args.model_name_or_path:
            model = load_pretrained(AutoModelForCausalLM, args.model_name_or_path)
            if model.get_input_embeddings().num_embeddings < len(tokenizer):
                raise RecipeError(
                    f"tokenizer {args.tokenizer_name_or_path} has {len(tokenizer)} tokens but the model "
                    f"embeds only {model.get_input_embeddings().num_embeddings}; use the model's tokenizer"
                )
            return model
        shape = dict(n_positions=args.context_length, n_embd=args.n_embd, n_layer=args.n_layer, n_head=args.n_head)
        dropout = dict(resid_pdrop=args.dropout, embd_pdrop=args.dropout, attn_pdrop=args.dropout)
        ends = dict(bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
        config = GPT2Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **shape, **dropout, **ends)
        return GPT2LMHeadModel(config)

    def packed_splits(self) -> dict:
        args = self.args
        splits, held_out = (
            [args.dataset_train_split, args.dataset_test_split],
            (args.eval_split_ratio, self.config.seed),
        )
        return pretraining_splits(args.dataset_name, splits, held_out, self.tokenizer, args.context_length)

    def trainer(self, callbacks=()):
        config = self.config
        self.recall = None
        if self.args.probe_steps:
            rows = config.per_device_train_batch_size * config.gradient_accumulation_steps * config.world_size
            self.recall = RecallAlongTraining(
                self.tokenizer, self.probed, self.args.probe_steps, rows * self.args.context_length
            )
            callbacks = [*callbacks, self.recall]
        return Trainer(
            model=self.model,
            args=self.config,
            train_dataset=self.splits[self.args.dataset_train_split],
            eval_dataset=self.splits[self.args.dataset_test_split],
            processing_class=self.tokenizer,
            data_collator=DataCollatorForLanguageModeling(self.tokenizer, mlm=False),
            callbacks=list(callbacks),
            optimizers=(self.optimizer(self.model), None),
        )

    def optimizer(self, model):
        """Muon with AdamW when `muon_learning_rate` is set; else None: the Trainer's own (`optim`)."""
        config, rate = self.config, self.args.muon_learning_rate
        if not rate:
            return None
        betas = (config.adam_beta1, config.adam_beta2)
        return MuonWithAdamW(model, rate, config.learning_rate, betas, config.adam_epsilon, config.weight_decay)

    def measure(self, trainer, result) -> dict:
        eval_loss, config = trainer.evaluate()["eval_loss"], self.config
        rows = (
            config.per_device_train_batch_size * config.gradient_accumulation_steps * trainer.accelerator.num_processes
        )
        tokens = result.global_step * rows * self.args.context_length
        return {
            "parameters": self.model.num_parameters(),
            "train_loss": round(result.training_loss, 4),
            "eval_loss": round(eval_loss, 4),
            "perplexity": round(math.exp(eval_loss), 3),
            "trained_tokens": tokens,
            "tokens_per_second": round(tokens / result.metrics["train_runtime"]),
            **(self.recall.summary() if self.recall else {}),
        }

    def evaluate(self, out) -> dict:
        if not self.probed:
            return {}
        saved = load_trained(AutoModelForCausalLM, out)
        return probe(saved, self.tokenizer, self.probed)

    def base_model(self) -> str | None:
        return self.args.model_name_or_path

    def card_summary(self) -> str:
        args = self.args
        return (
            f"A causal LM {'further ' if args.model_name_or_path else ''}pretrained on "
            f"{'the rlhf-recipes embedded world' if self.world else args.dataset_name} "
            f"({self.data['train_blocks']} blocks of {args.context_length} tokens). "
            "It continues text; it does not follow instructions."
        )


if __name__ == "__main__":
    cli(Pretrain.main)
