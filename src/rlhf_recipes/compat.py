"""Workarounds for TRL 1.12 and DeepSpeed quirks, each with the upstream behaviour it works around.

Kept in one place so that they can be dropped one by one when the pins move; nothing else in the
package reaches into a library's private state.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def on_this_process_only() -> Iterator[None]:
    """Let from_pretrained/save_pretrained run on one process while a DeepSpeed ZeRO-3 run is live.

    While transformers holds a ZeRO-3 config it shards every load and gathers every save over all the
    ranks, so the main process alone would wait forever for the others. transformers keeps that config in
    a module-level weak reference (`transformers.integrations.deepspeed._hf_deepspeed_config_weak_ref`,
    read by `is_deepspeed_zero3_enabled`) and offers no public way to suspend it.
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
