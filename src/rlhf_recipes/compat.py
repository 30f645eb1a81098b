"""Workarounds for upstream behaviour, each naming what it works around and where upstream tracks it.

Upstream: TRL removed PPOTrainer in 1.13 (huggingface/trl#7020), so the PPO workarounds here stay until
the project's own PPO replaces it; the others name the issue or the missing public API they wait for.

Kept in one place, importing nothing of this package, so that each can be dropped when its upstream
issue is fixed; nothing else in the package reaches into a library's private state.
"""

from __future__ import annotations

import gc
import json
import time
import types
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from trl.models.utils import disable_gradient_checkpointing

TOKEN_COUNT = "token_count.json"


@contextmanager
def on_this_process_only() -> Iterator[None]:
    """Let from_pretrained/save_pretrained run on one process while a DeepSpeed ZeRO-3 run is live.

    While transformers holds a ZeRO-3 config it shards every load and gathers every save over all the
    ranks, so the main process alone would wait forever for the others. transformers keeps that config in
    a module-level weak reference (`transformers.integrations.deepspeed._hf_deepspeed_config_weak_ref`,
    read by `is_deepspeed_zero3_enabled`) and offers no public way to suspend it (upstream: none filed;
    transformers' own Trainer saves under ZeRO-3 from every rank instead, huggingface/transformers#25959).
    """
    from transformers.integrations import deepspeed

    zero3 = deepspeed._hf_deepspeed_config_weak_ref
    deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        deepspeed._hf_deepspeed_config_weak_ref = zero3


def save_ppo_policy(trainer, tokenizer, out) -> None:
    """Save a PPOTrainer's policy alone as a plain Hugging Face model (or LoRA adapter), under any engine.

    TRL 1.12's `PPOTrainer.save_model` breaks with several processes (huggingface/trl#2375): under DDP it
    cannot find `.policy` inside the wrapper, and under ZeRO-3 it hands transformers the bare policy where a
    DeepSpeed engine is expected. accelerate's `get_state_dict` gathers the full weights on every rank
    (each must take part); the main process saves the policy's share of them.
    """
    state = trainer.accelerator.get_state_dict(trainer.model)
    if trainer.accelerator.is_main_process:
        policy = trainer.accelerator.unwrap_model(trainer.model).policy
        with on_this_process_only():
            policy.save_pretrained(
                out, state_dict={k.removeprefix("policy."): v for k, v in state.items() if k.startswith("policy.")}
            )
        tokenizer.save_pretrained(out)
    trainer.accelerator.wait_for_everyone()


class KeepsTokenCount:
    """For TRL 1.12's SFTTrainer and RewardTrainer: the `num_tokens` count survives a resume.

    Upstream: no TRL issue yet; the same reset is axolotl-ai-cloud/axolotl#3291 (transformers' own token
    count is in TrainerState and survives, huggingface/transformers#40560 fixed its rate).

    Upstream keeps the count in `_total_train_tokens`, which no checkpoint holds, so a resumed run logs
    tokens from zero again. The count is saved next to each checkpoint and put back when training resumes.
    """

    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        if self.accelerator.is_main_process:
            folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            (folder / TOKEN_COUNT).write_text(json.dumps({"num_tokens": self._total_train_tokens}))

    def train(self, resume_from_checkpoint: str | None = None, **kwargs):
        saved = Path(resume_from_checkpoint or "") / TOKEN_COUNT
        if resume_from_checkpoint and saved.is_file():
            self._total_train_tokens = json.loads(saved.read_text())["num_tokens"]
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)


def generate_with_kv_cache(policy, args) -> None:
    """Sample from the policy with its KV cache when activation checkpointing is on for training.

    TRL 1.12's PPO, RLOO and GRPO loops sample from the policy in train mode. With gradient checkpointing
    on, transformers' GPT-2 passes its blocks no past key values in train mode while `generate` feeds
    one new token per step: each token was sampled from a model that saw only the token before it
    (measured: greedy answers differ from the same model's in eval mode). Checkpointing is switched off
    for each `generate` call and back on for training. Upstream: huggingface/transformers#36051 (generate with
    gradient checkpointing on) and, for the RL trainers, huggingface/trl#4593.
    """
    generate = policy.generate

    def generate_cached(*a, **kw):
        with disable_gradient_checkpointing(policy, args.gradient_checkpointing_kwargs):
            return generate(*a, **kw)

    policy.generate = generate_cached


@contextmanager
def collections_skip_the_setup() -> Iterator[None]:
    """Make TRL 1.12's two `gc.collect()` calls per PPO update cheap, without skipping them.

    A full collection walks every object the process tracks; after importing torch, transformers and
    datasets and loading four models that is hundreds of thousands, and on CPU the two collections took
    14-25% of each update. `gc.freeze()` moves everything alive when training starts into the permanent
    generation, which collections leave alone, so they walk only what the updates themselves create.
    Everything is unfrozen when training ends.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _timed(function, totals: dict, phase_of):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[phase_of()] += time.perf_counter() - start

    return wrapper


@contextmanager
def ppo_update_phases(trainer):
    """Seconds per phase of TRL 1.12's PPO updates (generation, scoring, training, gc) run inside the block.

    TRL's `PPOTrainer.train` is one long loop with no timers; it calls module-level helpers (`batch_generation`,
    `forward`, `get_reward`, `gc.collect`) and the accelerator's `backward` and the optimizer's `step`. Those
    names are wrapped with timers while the block runs and put back afterwards. TRL removed PPOTrainer in 1.13
    (huggingface/trl#7020), so no timers will come upstream; the bench alone uses this.
    """
    from trl.experimental.ppo import ppo_trainer

    totals = defaultdict(float)
    module = {name: getattr(ppo_trainer, name) for name in ("batch_generation", "forward", "get_reward", "gc")}
    backward, step = trainer.accelerator.backward, trainer.optimizer.step
    grad_or_scoring = lambda: "training" if torch.is_grad_enabled() else "scoring"  # noqa: E731
    ppo_trainer.batch_generation = _timed(module["batch_generation"], totals, lambda: "generation")
    ppo_trainer.forward = _timed(module["forward"], totals, grad_or_scoring)
    ppo_trainer.get_reward = _timed(module["get_reward"], totals, lambda: "scoring")
    ppo_trainer.gc = types.SimpleNamespace(collect=_timed(gc.collect, totals, lambda: "gc"))
    trainer.accelerator.backward = _timed(backward, totals, lambda: "training")
    trainer.optimizer.step = _timed(step, totals, lambda: "training")
    try:
        yield totals
    finally:
        for name, original in module.items():
            setattr(ppo_trainer, name, original)
        del trainer.accelerator.backward, trainer.optimizer.step  # the instance attributes: methods again
