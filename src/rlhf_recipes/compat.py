"""Workarounds for upstream behaviour, each naming what it works around and where upstream tracks it.

Each names the upstream issue or the missing public API it waits for. (The PPO workarounds went with TRL's
PPOTrainer: the project's own, training/ppo, needs none.)

Kept in one place, importing nothing of this package, so that each can be dropped when its upstream
issue is fixed; nothing else in the package reaches into a library's private state.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TOKEN_COUNT = "token_count.json"


class _ImportedOnFirstUse(types.ModuleType):
    """Stands in for a module until an attribute it lacks is read; then imports the real one, the normal way."""

    def __getattr__(self, name: str):
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)


def defer_bitsandbytes() -> None:
    """Import bitsandbytes on first use instead of whenever transformers' Trainer is imported.

    transformers imports peft whenever it is installed (`trainer_utils`), peft imports bitsandbytes at once
    (`peft/helpers.py`), and bitsandbytes calls `torch.compile` while it is imported, which imports torch's
    inductor: ~4 s of every stage's start-up on a CPU, for a library only QLoRA and 8-bit optimizers use
    (upstream: none filed). A stand-in takes its place in `sys.modules` until someone reads an attribute it
    lacks (`bnb.nn`, a submodule's `__path__`): then the real module is imported. The stand-in carries the
    module's spec and file, so `importlib.util.find_spec` and the scans of `sys.modules` that read
    `__file__` (`inspect.getmodule`, run by torch while it imports) find it without importing it: the
    standard library's `LazyLoader` imported it there, midway through torch's own imports, and left it
    half-imported. Must run before peft is imported: `rlhf_recipes/__init__.py` calls it, and each script
    imports the package first.
    """
    if "bitsandbytes" in sys.modules or (spec := importlib.util.find_spec("bitsandbytes")) is None:
        return
    stand_in = _ImportedOnFirstUse(spec.name)
    stand_in.__spec__, stand_in.__loader__, stand_in.__file__ = spec, spec.loader, spec.origin
    sys.modules[spec.name] = stand_in


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
