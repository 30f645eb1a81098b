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


class FullLogitsOnCPU:
    """TRL's chunked log-probabilities (`trl.kernels.ChunkedLogProbFunction`) on a CPU, from the full logits.

    TRL 1.16's SFT, DPO, GRPO and RLOO trainers score tokens through a fused LM head that never holds the
    `(tokens, vocabulary)` logits: on a GPU a Triton kernel, elsewhere tiles folded in float32 by Python-level
    torch code, recomputed in the backward pass. On a CPU with a small vocabulary that makes an SFT step 1.56x
    a plain one (the tiny model: 96 ms against 61 ms), and `make bench` measured SFT and DPO at 0.60x their
    plain loops. On a CPU this computes the same outputs (log-probabilities, entropy, the other per-token
    fields TRL asks for) from the full logits, with the gradient written out (`_full_logits_function`); on
    any other device TRL's own function runs. Upstream: none filed (the fused head is huggingface/trl's memory
    optimization for large vocabularies on GPUs). tests/test_compat.py holds it to TRL's function, outputs and
    gradients.
    """

    trl_function = None  # TRL's ChunkedLogProbFunction, set by `full_logits_on_cpu`
    function = None  # the autograd Function, built on first use (it needs torch, which this module defers)

    @classmethod
    def apply(cls, hidden, weight, bias, targets, temperature, chunk_size, softcap=None, logit_scale=1.0, outputs=()):
        if hidden.device.type != "cpu":
            return cls.trl_function.apply(
                hidden, weight, bias, targets, temperature, chunk_size, softcap, logit_scale, outputs
            )
        import torch

        cls.function = cls.function or _full_logits_function()
        differentiable = (hidden, weight) + ((bias,) if bias is not None else ())
        backward = torch.is_grad_enabled() and any(t.requires_grad for t in differentiable)
        return cls.function.apply(
            hidden, weight, bias, targets, temperature, softcap, logit_scale, tuple(outputs), backward
        )


def _full_logits_function():
    """The full-logits scoring as one autograd Function, its backward written out.

    Left to autograd, the same forward recorded every step of it: a backward through the entropy that TRL's
    SFT trainer only logs, and through the identity scalings (temperature and logit scale 1). Here the
    forward records nothing and the backward is the logits' gradient in closed form: for log p_t,
    onehot(t) - p; for the entropy H, -p (log p + H); each only when its output has a gradient. The forward
    keeps p for the backward (when one will run) instead of log p: the entropy needs p too, so a step that logs
    it exponentiates once, not twice. The top-1 flag is TRL's: the label is the first of the largest logits.
    """
    import torch

    class FullLogits(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, weight, bias, targets, temperature, softcap, logit_scale, outputs, backward):
            ctx.set_materialize_grads(False)  # an output nobody differentiates gets None, not zeros
            scaled = torch.nn.functional.linear(hidden, weight, bias).float()
            scaled = scaled * logit_scale if logit_scale != 1.0 else scaled
            capped = softcap * torch.tanh(scaled / softcap) if softcap is not None else scaled
            z = capped / temperature if temperature != 1.0 else capped
            log_p = z.log_softmax(-1)
            log_probs = log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            p = log_p.exp() if backward or "entropy" in outputs else None
            entropy = -(p * log_p).sum(-1) if "entropy" in outputs else None
            log_sum_sq_probs = torch.logsumexp(2 * log_p, -1) if "log_sum_sq_probs" in outputs else None
            mean_logits = z.mean(-1) if "mean_logits" in outputs else None
            is_top1 = label_is_first_largest(z, targets) if "is_top1" in outputs else None
            p = p if backward else None
            ctx.save_for_backward(hidden, weight, targets, p, entropy, capped if softcap is not None else None)
            ctx.settings = (bias is not None, temperature, softcap, logit_scale)
            ctx.mark_non_differentiable(*(t for t in (log_sum_sq_probs, mean_logits, is_top1) if t is not None))
            return log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1

        @staticmethod
        def backward(ctx, d_log_probs, d_entropy, *_):  # as in TRL: the last three carry no gradient
            hidden, weight, targets, p, entropy, capped = ctx.saved_tensors
            has_bias, temperature, softcap, logit_scale = ctx.settings
            if d_log_probs is None and d_entropy is None:
                return (None,) * 9
            d_z = None
            if d_entropy is not None:  # -(p log p + p H), with 0 log 0 = 0 where p underflowed
                d_z = torch.xlogy(p, p).add_(p * entropy.unsqueeze(-1)).mul_(-d_entropy.unsqueeze(-1))
            if d_log_probs is not None:
                d_scored = p.mul(-d_log_probs.unsqueeze(-1))
                d_scored.scatter_add_(-1, targets.unsqueeze(-1), d_log_probs.unsqueeze(-1).to(p.dtype))
                d_z = d_scored if d_z is None else d_z.add_(d_scored)
            d_z = d_z / temperature if temperature != 1.0 else d_z
            d_z = d_z * (1 - (capped / softcap) ** 2) if softcap is not None else d_z
            d_z = d_z * logit_scale if logit_scale != 1.0 else d_z
            needs = ctx.needs_input_grad
            d_hidden = (d_z @ weight.float()).to(hidden.dtype) if needs[0] else None
            d_weight = (d_z.t() @ hidden.float()).to(weight.dtype) if needs[1] else None
            d_bias = d_z.sum(0).to(weight.dtype) if has_bias and needs[2] else None
            return d_hidden, d_weight, d_bias, None, None, None, None, None, None

    return FullLogits


def package_checks_cached() -> None:
    """Answer accelerate's "is this package installed?" once per process.

    accelerate 1.16's `is_peft_available`, `is_deepspeed_available` and `is_lomo_available` find the package
    and parse its METADATA file on every call (`accelerate.utils.imports._is_package_available`, uncached),
    and `unwrap_model` and `is_peft_model` ask them on every training step: ~1.5 ms a question, 5 questions and
    ~6 ms of a ~140 ms DPO step on this project's CPU (measured 2026-12-03; upstream: none filed). What is
    installed does not change while a run trains.
    """
    import functools

    from accelerate.utils import imports

    if not hasattr(imports._is_package_available, "cache_info"):
        imports._is_package_available = functools.cache(imports._is_package_available)


def label_is_first_largest(logits, labels):
    """`logits.argmax(-1) == labels` (the first of equal largest logits counts), at a third of its cost on a CPU.

    torch's argmax over a row runs ~13x slower than its max (0.88 ms against 0.07 ms on SFT's logits here):
    the label is top-1 when its logit is the row's largest and no other logit equals it; the rare tied rows
    go through argmax.
    """
    largest = logits.amax(-1)
    is_top1 = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1) >= largest
    others = logits.scatter(-1, labels.unsqueeze(-1), float("-inf")).amax(-1)
    tied = (is_top1 & (others >= largest)).nonzero().squeeze(-1)
    if len(tied):
        is_top1[tied] = logits[tied].argmax(-1) == labels[tied]
    return is_top1


def full_logits_on_cpu() -> None:
    """Route TRL's fused LM head through `FullLogitsOnCPU` (its module-level name, read on every call)."""
    from trl.trainer import utils

    if utils._ChunkedLogProbFunction is not FullLogitsOnCPU:
        FullLogitsOnCPU.trl_function = utils._ChunkedLogProbFunction
        utils._ChunkedLogProbFunction = FullLogitsOnCPU


def newton_schulz_in_float32_on_cpu() -> None:
    """Muon's Newton-Schulz iteration in float32 on a CPU; torch's own (bfloat16) elsewhere.

    `torch.optim.Muon` (torch 2.14) always iterates in bfloat16 (`grad.bfloat16()` in
    `torch.optim._muon._zeropower_via_newtonschulz`; upstream: none filed). A CPU without bfloat16 units
    (AVX2 only, as this project's 2-core AMD EPYC test machine on 2026-12-03) runs that 32x slower than
    float32: 66 ms against 2 ms for a 512 x 128 matrix, and the tiny recipe's pretraining took 629 s
    instead of 68 s. The same quintic iteration with torch's coefficients, in float32, differs from the
    bfloat16 one by bfloat16's rounding (tests/test_compat.py). Patched at the module-level name Muon's step
    reads on every call.
    """
    from torch.optim import _muon

    if hasattr(_muon._zeropower_via_newtonschulz, "in_bfloat16"):
        return
    in_bfloat16 = _muon._zeropower_via_newtonschulz

    def orthogonalized(grad, ns_coefficients, ns_steps, eps):
        if grad.device.type != "cpu":
            return in_bfloat16(grad, ns_coefficients, ns_steps, eps)
        a, b, c = ns_coefficients
        wide = grad.float().T if grad.size(0) > grad.size(1) else grad.float()
        x = wide / wide.norm().clamp(min=eps)  # spectral norm at most 1
        for _ in range(ns_steps):
            gram = x @ x.T
            x = a * x + (b * gram + c * gram @ gram) @ x
        return x.T if grad.size(0) > grad.size(1) else x

    orthogonalized.in_bfloat16 = in_bfloat16  # torch's, kept for GPUs and the tests
    _muon._zeropower_via_newtonschulz = orthogonalized


def no_deepspeed_inference_op_on_cpu() -> None:
    """Start DeepSpeed on a CPU without building its shared-memory all-reduce op.

    DeepSpeed's communication backend builds that C++ op as it starts on a CPU (`deepspeed.comm.torch`'s
    `build_shm_op`, compiled with g++ on first use: ~1 min, once per venv) for `inference_all_reduce`, which
    only its inference engine calls; training reduces through torch.distributed (gloo) with or without it
    (upstream: none filed). On a GPU DeepSpeed builds no such op, so nothing changes there.
    """
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() == "cpu":
        backend = importlib.import_module("deepspeed.comm.torch")  # `import ... as` would give `torch`, its global
        backend.build_shm_op = lambda: None


def cpu_ops_built_without_debug_info() -> None:
    """Build DeepSpeed's CPU ops (CPU Adam, for ZeRO offload on a CPU) without `-g`.

    DeepSpeed compiles CPU Adam with g++ the first time an offload run needs it, at `-O3 -g`
    (`CPUOpBuilder.cxx_args`). The debug information is for debugging its C++ and changes no instruction, but
    on 2 cores it makes each of the two files take 44 s instead of 28 s (measured 2026-12-03; upstream: none
    filed). On a GPU DeepSpeed builds with its CUDA builder, left as it is.
    """
    from deepspeed.accelerator import get_accelerator

    accelerator = get_accelerator()
    if accelerator.device_name() != "cpu":
        return
    builder = importlib.import_module(accelerator.op_builder_dir() + ".builder").CPUOpBuilder
    if not getattr(builder.cxx_args, "without_debug_info", False):
        with_debug_info = builder.cxx_args

        def cxx_args(self):
            return [arg for arg in with_debug_info(self) if arg != "-g"]

        cxx_args.without_debug_info = True
        builder.cxx_args = cxx_args


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
