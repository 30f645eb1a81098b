"""The project's PPO trainer for language models, on accelerate and transformers' Trainer machinery.

Each update: sample answers to a batch of prompts with the KV cache (`rollout`), score them (`score`:
log-probs of policy and reference, values, the reward model's score at the last real token, the
missing-EOS penalty, the per-token KL penalty, GAE, whitened advantages), then `num_ppo_epochs` passes of
`num_mini_batches` clipped policy-and-value steps (`learn`). transformers' Trainer is the base for what is
not PPO: the accelerator (one CPU to DeepSpeed ZeRO-3), AdamW and its schedule, callbacks, logging to
TensorBoard; the loop, checkpoints and resume are this class's own and use only public APIs.

A checkpoint (`checkpoint-<update>`) is accelerate's `save_state` (policy and value weights, or the
DeepSpeed engine's own files; optimizer, schedule, every process's RNG) plus the trainer state and the
data position, so a resumed run reproduces the uninterrupted one bit for bit.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, GenerationConfig, Trainer, TrainerState

from ...compat import on_this_process_only
from ..errors import RecipeError
from ..outputs import CHECKPOINT_PREFIX
from .algorithm import (
    ENDED_LOGPROB,
    TEMPERATURE_EPS,
    AdaptiveKLController,
    clipped_policy_loss,
    clipped_value_loss,
    entropy_from_logits,
    explained_variance,
    generalized_advantages,
    kl_per_token,
    last_token_index,
    masked_mean,
    masked_var,
    masked_whiten,
    rewards_with_kl,
    token_logprobs,
    truncate_after_stop,
)
from .config import PPOConfig

DATA_POSITION, PPO_STATE = "data_position.json", "trainer_state.json"
PHASES = ("generation", "scoring", "training")


@dataclass
class PPOState(TrainerState):
    """transformers' TrainerState with the episode count, the (possibly adaptive) KL coefficient and the
    reward model's mean and std on the initial policy's answers (reward normalisation)."""

    episode: int = 0
    kl_coef: float | None = None
    reward_mean: float | None = None  # None: not calibrated (raw scores)
    reward_std: float | None = None


class PolicyAndValue(nn.Module):
    """The two trained models as one module, so one optimizer and one DDP/DeepSpeed wrapper hold both."""

    def __init__(self, policy: nn.Module, value: nn.Module) -> None:
        super().__init__()
        self.policy, self.value = policy, value
        self.config = policy.config  # accelerate sizes DeepSpeed's buckets from it

    def forward(self, input_ids, attention_mask, position_ids, answer_length: int):
        """The policy's logits predicting each answer token, and the value at every position."""
        logits = answer_logits(self.policy, input_ids, attention_mask, position_ids, answer_length)
        return logits, values_per_token(self.value, input_ids, attention_mask, position_ids)


def answer_logits(model: nn.Module, input_ids, attention_mask, position_ids, answer_length: int) -> torch.Tensor:
    """Logits at the positions that predict the answer's tokens only: the LM head and the softmax skip the
    prompt (`logits_to_keep`), which on a small model is a large share of the work."""
    logits = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=False,
        logits_to_keep=answer_length + 1,
    ).logits
    return logits[:, :-1]


def values_per_token(model: nn.Module, input_ids, attention_mask, position_ids) -> torch.Tensor:
    """A sequence classifier's score head applied at every position (the reward model scores the last one)."""
    backbone = getattr(model, model.base_model_prefix)
    hidden = backbone(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
    ).last_hidden_state
    return model.score(hidden).squeeze(-1)


def model_inputs(sequences: torch.Tensor, pad_token_id: int) -> dict:
    """Attention mask and positions for left-padded sequences (a left pad must not shift the positions)."""
    mask = sequences != pad_token_id
    positions = mask.long().cumsum(1) - mask.long()
    return {"input_ids": sequences.masked_fill(~mask, 0), "attention_mask": mask, "position_ids": positions}


class ReplayableLoader:
    """A DataLoader that can be put back where it was: the epoch's shuffle and how far into it.

    Each pass over a shuffled DataLoader draws its order from the RNG states at the moment the pass
    starts. Keeping those states (the global one and the sampler's own generators) and the count of
    batches served since lets a resumed run redraw the same order and skip to the next batch.
    """

    def __init__(self, loader) -> None:
        self.loader = loader
        self.epoch_rng, self.batches_into_epoch, self._replay = None, 0, None

    def _generators(self) -> list:
        sampler = getattr(getattr(self.loader, "batch_sampler", None), "sampler", None)
        found = [getattr(self.loader, "synchronized_generator", None), getattr(sampler, "generator", None)]
        return list({id(g): g for g in found if g is not None}.values())

    def position(self) -> dict:
        rng = [state.tolist() for state in self.epoch_rng] if self.epoch_rng else None
        return {"batches_into_epoch": self.batches_into_epoch, "epoch_rng": rng}

    def restore(self, position: dict) -> None:
        if position["epoch_rng"] is not None:
            self._replay = position

    def __iter__(self):
        skip, rng_now = 0, None
        if self._replay is not None:
            rng_now = torch.get_rng_state()  # as the checkpoint left it
            saved = [torch.tensor(state, dtype=torch.uint8) for state in self._replay["epoch_rng"]]
            torch.set_rng_state(saved[0])
            for generator, state in zip(self._generators(), saved[1:]):
                generator.set_state(state)
            skip, self._replay = self._replay["batches_into_epoch"], None
        self.epoch_rng = [torch.get_rng_state()] + [g.get_state() for g in self._generators()]
        self.batches_into_epoch = 0
        for batch in self.loader:
            self.batches_into_epoch += 1
            if skip:
                skip -= 1
                if skip == 0:  # caught up: the global RNG back as the checkpoint left it
                    torch.set_rng_state(rng_now)
                continue
            yield batch

    def __len__(self) -> int:
        return len(self.loader)


@dataclass
class Rollout:
    """One batch of sampled answers and everything PPO computed from them before learning."""

    query_responses: torch.Tensor  # prompt (left-padded) + answer as sampled
    responses: torch.Tensor  # the answer as sampled (tokens after the stop token are kept: masked)
    logprobs: torch.Tensor  # under the policy that sampled, at the training temperature
    ref_logprobs: torch.Tensor
    values: torch.Tensor
    scores: torch.Tensor  # the reward model's, with the missing-EOS penalty
    ended: torch.Tensor  # True past each answer's last real token
    ended_value: torch.Tensor  # True past the step after it (the value is trained one step further)
    kl: torch.Tensor
    kl_reward: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    eos_tokens: int


class PPOTrainer(Trainer):
    """PPO with a value model initialised from the reward model and a KL penalty to a frozen reference.

    With a LoRA `peft_config` the reference is the policy with its adapter switched off (`ref_model`
    None).
    """

    def __init__(
        self,
        args: PPOConfig,
        processing_class,
        model,
        ref_model,
        reward_model,
        value_model,
        train_dataset,
        peft_config=None,
        callbacks=None,
    ) -> None:
        self._check_models(processing_class, model, reward_model, value_model)
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
        elif ref_model is None:
            raise ValueError(
                "PPO needs a reference model, or a peft_config (the reference is the adapter switched off)"
            )
        for m in (model, ref_model, reward_model, value_model):
            if m is not None:
                disable_dropout(m)
        self.tokenizer = processing_class
        self.stop_token_id = processing_class.eos_token_id if args.stop_token == "eos" else args.stop_token_id
        super().__init__(
            model=PolicyAndValue(model, value_model),
            args=args,
            data_collator=DataCollatorWithPadding(processing_class),
            processing_class=processing_class,
            callbacks=callbacks,
        )
        self._size_batches(len(train_dataset))
        self.loader = DataLoader(
            train_dataset,
            batch_size=self.local_batch_size,
            shuffle=True,
            collate_fn=self.data_collator,
            drop_last=True,
        )
        if args.activation_checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=args.activation_checkpointing_kwargs)
        self.create_optimizer_and_scheduler(num_training_steps=self.num_updates)
        torch.manual_seed(args.seed)  # the shuffle of the first pass over the prompts
        self.model, self.optimizer, loader = self.accelerator.prepare(self.model, self.optimizer, self.loader)
        self.model_wrapped = self.model
        self.accelerator.register_for_checkpointing(self.lr_scheduler)  # stepped once per update, by hand
        self.loader = ReplayableLoader(loader)
        self.ref_model, self.reward_model = (self._frozen(m) for m in (ref_model, reward_model))
        self.state = PPOState(
            is_local_process_zero=self.is_local_process_zero(), is_world_process_zero=self.is_world_process_zero()
        )
        self.kl = AdaptiveKLController(args.kl_coef, args.kl_target, args.kl_horizon) if args.kl_target else None
        self.phase_seconds: dict[str, float] = defaultdict(float)

    # --- set-up -------------------------------------------------------------------------------------
    @staticmethod
    def _check_models(tokenizer, policy, reward_model, value_model) -> None:
        if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
            raise ValueError("PPO needs a pad token distinct from EOS (answers end at EOS; padding is masked)")
        for name, m in (("reward model", reward_model), ("value model", value_model)):
            if not hasattr(m, "score") or m.config.num_labels != 1:
                raise ValueError(f"the {name} must be a sequence classifier with one output (a `score` head)")
            if m.config.vocab_size != policy.config.vocab_size:
                raise ValueError(
                    f"the {name} has a vocabulary of {m.config.vocab_size} tokens and the policy "
                    f"{policy.config.vocab_size}; PPO scores the policy's token ids: both need the policy's tokenizer"
                )

    def _size_batches(self, prompts: int) -> None:
        """Batch sizes from the config: an update samples `local_batch_size` answers per process."""
        args, processes = self.args, self.accelerator.num_processes
        self.local_batch_size = args.per_device_train_batch_size * args.gradient_accumulation_steps
        batch_size = self.local_batch_size * processes
        if args.num_mini_batches > 1 and args.gradient_accumulation_steps > 1:
            raise ValueError(
                "num_mini_batches and gradient_accumulation_steps are both above 1; each splits the batch into "
                "optimizer steps, so set one of them to 1"
            )
        if self.local_batch_size % args.num_mini_batches:
            raise ValueError(
                f"num_mini_batches {args.num_mini_batches} does not divide the batch of {self.local_batch_size} "
                "answers per process (per_device_train_batch_size x gradient_accumulation_steps)"
            )
        self.mini_batch_size = self.local_batch_size // args.num_mini_batches
        self.micro_batch_size = min(args.per_device_train_batch_size, self.mini_batch_size)
        episodes = args.total_episodes or int(args.num_train_epochs * prompts)
        if episodes < batch_size:
            raise ValueError(
                f"total_episodes {episodes} is less than one batch of {batch_size} answers "
                f"(per_device_train_batch_size x gradient_accumulation_steps x {processes} processes)"
            )
        if prompts < self.local_batch_size:
            raise ValueError(f"{prompts} training prompts are fewer than one batch of {self.local_batch_size}")
        self.num_updates = math.ceil(episodes / batch_size)
        self.batch_size = batch_size

    def _frozen(self, model):
        """A model that only scores: on the device, in eval mode, no gradients; sharded under ZeRO-3."""
        if model is None:
            return None
        model.requires_grad_(False)
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        if plugin is not None and plugin.zero_stage == 3:
            import deepspeed

            config = {k: v for k, v in plugin.deepspeed_config.items() if k not in ("optimizer", "scheduler")}
            model = deepspeed.initialize(model=model, config=config)[0]
        else:
            model = model.to(self.accelerator.device)
        model.eval()  # a DeepSpeed engine's eval() returns nothing
        return model

    # --- one update ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _timed(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phase_seconds[phase] += time.perf_counter() - start

    @contextlib.contextmanager
    def _generating_policy(self):
        """The bare policy, ready to sample with its KV cache: activation checkpointing off (transformers
        feeds no cache to checkpointed blocks), weights gathered under ZeRO-3 when asked."""
        policy = self.accelerator.unwrap_model(self.model).policy
        checkpointing = getattr(policy, "is_activation_checkpointing", False)
        if checkpointing:
            policy.activation_checkpointing_disable()
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        gather = contextlib.nullcontext()
        if plugin is not None and plugin.zero_stage == 3 and self.args.ds3_gather_for_generation:
            import deepspeed

            gather = deepspeed.zero.GatheredParameters(list(policy.parameters()))
        try:
            with gather:
                yield policy
        finally:
            if checkpointing:
                policy.activation_checkpointing_enable(
                    activation_checkpointing_kwargs=self.args.activation_checkpointing_kwargs
                )

    def generate(self, queries: torch.Tensor) -> torch.Tensor:
        """Sampled answers to left-padded prompts, right-padded to a common length."""
        args, pad = self.args, self.tokenizer.pad_token_id
        config = GenerationConfig(
            max_new_tokens=args.response_length,
            do_sample=True,
            temperature=args.temperature + TEMPERATURE_EPS,
            top_k=0,
            top_p=1.0,
            eos_token_id=self.stop_token_id,
            pad_token_id=pad,
        )
        answers = []
        with self._generating_policy() as policy:
            for chunk in queries.split(args.local_rollout_forward_batch_size):
                out = policy.generate(input_ids=chunk, attention_mask=chunk != pad, generation_config=config)
                answers.append(out[:, chunk.size(1) :])
        width = max(a.size(1) for a in answers)
        return torch.cat([nn.functional.pad(a, (0, width - a.size(1)), value=pad) for a in answers])

    def _logprobs(self, model, query_responses: torch.Tensor, context: int) -> torch.Tensor:
        answers = query_responses[:, context:]
        inputs = model_inputs(query_responses, self.tokenizer.pad_token_id)
        logits = answer_logits(model, **inputs, answer_length=answers.size(1))
        return token_logprobs(logits / (self.args.temperature + TEMPERATURE_EPS), answers)

    @torch.no_grad()
    def score(self, queries: torch.Tensor, responses: torch.Tensor) -> Rollout:
        """Everything PPO needs from a batch of sampled answers before it learns from them."""
        args, pad, context = self.args, self.tokenizer.pad_token_id, queries.size(1)
        query_responses = torch.cat([queries, responses], dim=1)
        unwrapped = self.accelerator.unwrap_model(self.model)
        chunks = defaultdict(list)
        for rows in torch.arange(len(queries)).split(args.local_rollout_forward_batch_size):
            sequences = query_responses[rows]
            chunks["logprobs"].append(self._logprobs(unwrapped.policy, sequences, context))
            if self.ref_model is None:
                with unwrapped.policy.disable_adapter():
                    chunks["ref"].append(self._logprobs(unwrapped.policy, sequences, context))
            else:
                chunks["ref"].append(self._logprobs(self.ref_model, sequences, context))
            inputs = model_inputs(sequences, pad)
            chunks["values"].append(values_per_token(unwrapped.value, **inputs)[:, context - 1 : -1])
        logprobs, ref_logprobs, values = (torch.cat(chunks[k]) for k in ("logprobs", "ref", "values"))
        values = self.normalized(values)
        scores, last, has_eos = self.reward_scores(queries, responses)
        scores = self.normalized(scores)
        if args.missing_eos_penalty is not None:
            scores = scores - args.missing_eos_penalty * (~has_eos).float()
        steps = torch.arange(responses.size(1), device=responses.device)
        ended = steps > last.unsqueeze(1)
        ended_value = steps > (last + 1).unsqueeze(1)
        logprobs = logprobs.masked_fill(ended, ENDED_LOGPROB)
        ref_logprobs = ref_logprobs.masked_fill(ended, ENDED_LOGPROB)
        values = values.masked_fill(ended_value, 0.0)
        kl = kl_per_token(logprobs, ref_logprobs, args.kl_estimator).masked_fill(ended, 0.0)
        rewards, kl_reward = rewards_with_kl(scores, kl, self.kl_coef, last)
        if args.whiten_rewards:
            rewards = masked_whiten(rewards, ~ended_value, shift_mean=False).masked_fill(ended_value, 0.0)
        advantages, returns = generalized_advantages(rewards, values, args.gamma, args.lam)
        advantages = masked_whiten(advantages, ~ended).masked_fill(ended, 0.0)
        eos_tokens = int((responses == self.tokenizer.eos_token_id).sum())
        return Rollout(query_responses, responses, logprobs, ref_logprobs, values, scores, ended, ended_value,
                       kl, kl_reward, advantages, returns, eos_tokens)  # fmt: skip

    @torch.no_grad()
    def reward_scores(self, queries: torch.Tensor, responses: torch.Tensor):
        """The reward model's raw score at each answer's last real token (answers cut at the stop token), that
        index, and whether the answer ended with EOS."""
        pad, context = self.tokenizer.pad_token_id, queries.size(1)
        scores, lasts, has_eos = [], [], []
        for rows in torch.arange(len(queries)).split(self.args.local_rollout_forward_batch_size):
            ended = responses[rows]
            if self.stop_token_id is not None:
                ended = truncate_after_stop(ended, self.stop_token_id, pad)
            last = last_token_index(ended, pad)
            scored = values_per_token(self.reward_model, **model_inputs(torch.cat([queries[rows], ended], 1), pad))
            scores.append(scored[torch.arange(len(rows)), context + last])
            lasts.append(last)
            has_eos.append((ended == self.tokenizer.eos_token_id).any(dim=1))
        return torch.cat(scores), torch.cat(lasts), torch.cat(has_eos)

    def normalized(self, scores: torch.Tensor) -> torch.Tensor:
        """Reward-model (and value-model) outputs in the units reward normalisation fixed: the value model is a
        copy of the reward model, so it is read in the same units and starts as close to the returns."""
        if self.state.reward_mean is None:
            return scores
        return (scores - self.state.reward_mean) / self.state.reward_std

    def calibrate_rewards(self, prompts) -> None:
        """Reward normalisation (Ziegler et al. 2019): the reward model's mean and std over
        `reward_norm_batches` batches of the initial policy's answers, kept in the state for resume."""
        raw = []
        for _ in range(self.args.reward_norm_batches):
            queries = next(prompts)["input_ids"].to(self.accelerator.device)
            raw.append(self.reward_scores(queries, self.generate(queries))[0])
        raw = self.accelerator.gather(torch.cat(raw)).float()
        self.state.reward_mean, self.state.reward_std = raw.mean().item(), max(raw.std().item(), 1e-6)

    @property
    def kl_coef(self) -> float:
        return self.kl.coef if self.kl else self.args.kl_coef

    def learn(self, batch: Rollout) -> dict[str, float]:
        """`num_ppo_epochs` passes over the batch in `num_mini_batches` optimizer steps each."""
        args, pad, context = (
            self.args,
            self.tokenizer.pad_token_id,
            batch.query_responses.size(1) - batch.responses.size(1),
        )
        warming_up = self.state.global_step < args.critic_warmup_steps
        stats = defaultdict(list)
        self.model.train()
        for _ in range(args.num_ppo_epochs):
            order = self.minibatch_order()
            for start in range(0, self.local_batch_size, self.mini_batch_size):
                mini = order[start : start + self.mini_batch_size]
                for micro_start in range(0, self.mini_batch_size, self.micro_batch_size):
                    rows = torch.as_tensor(mini[micro_start : micro_start + self.micro_batch_size])
                    with self.accelerator.accumulate(self.model):
                        self._micro_step(batch, rows, context, pad, warming_up, stats)
        return {k: torch.stack(v).mean() for k, v in stats.items()}

    def minibatch_order(self) -> np.ndarray:
        """A fresh shuffle of the batch for each pass (numpy's global RNG, saved in every checkpoint)."""
        return np.random.permutation(self.local_batch_size)

    def _micro_step(self, batch: Rollout, rows, context: int, pad: int, warming_up: bool, stats) -> None:
        args = self.args
        answer_length = batch.responses.size(1)
        logits, values = self.model(**model_inputs(batch.query_responses[rows], pad), answer_length=answer_length)
        logits = logits / (args.temperature + TEMPERATURE_EPS)
        ended, ended_value = batch.ended[rows], batch.ended_value[rows]
        logprobs = token_logprobs(logits, batch.responses[rows]).masked_fill(ended, ENDED_LOGPROB)
        values = self.normalized(values[:, context - 1 : -1]).masked_fill(ended_value, 0.0)
        policy_loss, policy_stats = clipped_policy_loss(
            logprobs, batch.logprobs[rows], batch.advantages[rows], ~ended, args.cliprange
        )
        value_loss, value_clipfrac = clipped_value_loss(
            values, batch.values[rows], batch.returns[rows], ~ended_value, args.cliprange_value
        )
        # during the critic warm-up the policy's gradient is zero (not absent: DDP expects every parameter's)
        loss = (0.0 if warming_up else 1.0) * policy_loss + args.vf_coef * value_loss
        self.accelerator.backward(loss)
        if args.max_grad_norm > 0 and self.accelerator.sync_gradients:  # under DeepSpeed its engine clips
            self.accelerator.clip_grad_norm_(self.model.parameters(), args.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad()
        with torch.no_grad():
            stats["policy_loss"].append(policy_loss.detach())
            stats["value_loss"].append(value_loss.detach())
            stats["value_clipfrac"].append(value_clipfrac)
            stats["entropy"].append(masked_mean(entropy_from_logits(logits), ~ended))
            for name, value in policy_stats.items():
                stats[name].append(value)
            ratio = (logprobs - batch.logprobs[rows]).exp()
            stats["ratio_var"].append(masked_var(ratio, ~ended))

    def _update_metrics(self, batch: Rollout, learned: dict, seconds: float) -> dict[str, float]:
        mean = lambda x: self.accelerator.gather_for_metrics(x.detach().float().mean().reshape(1)).mean().item()  # noqa: E731
        nll = (-batch.logprobs).masked_fill(batch.ended, 0.0).sum(1)
        explained = explained_variance(batch.values, batch.returns, ~batch.ended_value)
        metrics = {
            "objective/kl": mean(batch.kl.sum(1)),
            "objective/entropy": mean(nll),
            "objective/non_score_reward": mean(batch.kl_reward.sum(1)),
            "objective/rlhf_reward": mean(batch.scores + batch.kl_reward.sum(1)),
            "objective/scores": mean(batch.scores),
            "objective/kl_coef": self.kl_coef,
            "policy/approxkl_avg": mean(learned["approxkl"]),
            "policy/clipfrac_avg": mean(learned["clipfrac"]),
            "loss/policy_avg": mean(learned["policy_loss"]),
            "loss/value_avg": mean(learned["value_loss"]),
            "val/clipfrac_avg": mean(learned["value_clipfrac"]),
            "policy/entropy_avg": mean(learned["entropy"]),
            "val/ratio": mean(learned["ratio"]),
            "val/ratio_var": mean(learned["ratio_var"]),
            "val/num_eos_tokens": float(batch.eos_tokens),
            "val/answer_length": mean((~batch.ended).sum(1).float()),
            "val/explained_variance": mean(explained),
            "lr": self.lr_scheduler.get_last_lr()[0],
            "episode": self.state.episode,
            "eps": round(self.batch_size / seconds, 3),
        }
        return metrics

    def step(self, prompts: dict) -> dict[str, float]:
        """One PPO update on a batch of prompts; returns the update's metrics."""
        start, before = time.perf_counter(), dict(self.phase_seconds)
        queries = prompts["input_ids"].to(self.accelerator.device)
        with self._timed("generation"):
            responses = self.generate(queries)
        with self._timed("scoring"):
            batch = self.score(queries, responses)
        with self._timed("training"):
            learned = self.learn(batch)
        self.state.episode += self.batch_size
        metrics = self._update_metrics(batch, learned, time.perf_counter() - start)
        metrics |= {f"time/{p}_s": round(self.phase_seconds[p] - before.get(p, 0.0), 4) for p in PHASES}
        if self.kl:
            self.kl.update(metrics["objective/kl"], self.batch_size)
        self._show_samples(batch)
        return metrics

    def _show_samples(self, batch: Rollout) -> None:
        every = self.num_updates // self.args.num_sample_generations if self.args.num_sample_generations else 0
        if every and (self.state.global_step + 1) % every == 0 and self.accelerator.is_main_process:
            for answer, score in list(zip(batch.responses, batch.scores))[:4]:
                text = self.tokenizer.decode(answer, skip_special_tokens=True)
                print(f"[update {self.state.global_step + 1}] score {score.item():+.3f}: {text!r}", flush=True)

    # --- the loop, checkpoints and resume ---------------------------------------------------------
    def _prompts(self):
        while True:
            yield from self.loader

    def train(self, resume_from_checkpoint: str | None = None, updates: int | None = None, **_):
        """Run the updates left (all of them, or `updates` more), resuming from a checkpoint folder if given."""
        if resume_from_checkpoint:
            self._load_checkpoint(Path(resume_from_checkpoint))
        args, state = self.args, self.state
        last = self.num_updates if updates is None else min(self.num_updates, state.global_step + updates)
        state.max_steps, state.logging_steps, state.save_steps = self.num_updates, args.logging_steps, args.save_steps
        state.eval_steps, state.train_batch_size = args.eval_steps, self.batch_size
        self.control = self.callback_handler.on_train_begin(args, state, self.control)
        prompts = self._prompts()
        if args.reward_norm_batches and state.reward_mean is None:
            with self._timed("scoring"):
                self.calibrate_rewards(prompts)
        while state.global_step < last:
            self.control = self.callback_handler.on_step_begin(args, state, self.control)
            metrics = self.step(next(prompts))
            self.lr_scheduler.step()
            state.global_step += 1
            state.epoch = state.episode / (len(self.loader) * self.batch_size)
            state.kl_coef = self.kl_coef
            self.control = self.callback_handler.on_step_end(args, state, self.control)
            if self.control.should_log:
                self.log(metrics)
            if self.control.should_save:
                self._checkpoint()
                self.control = self.callback_handler.on_save(args, state, self.control)
        self.control = self.callback_handler.on_train_end(args, state, self.control)

    def _checkpoint(self) -> None:
        folder = Path(self.args.output_dir) / f"{CHECKPOINT_PREFIX}-{self.state.global_step}"
        self.accelerator.save_state(str(folder))
        if self.accelerator.is_main_process:
            self.state.save_to_json(str(folder / PPO_STATE))
            (folder / DATA_POSITION).write_text(json.dumps(self.loader.position()))
            self._rotate_checkpoints()
        self.accelerator.wait_for_everyone()

    def _rotate_checkpoints(self) -> None:
        """Keep the newest `save_total_limit` checkpoints this run wrote (its output folder is its own)."""
        limit = self.args.save_total_limit
        folders = sorted(
            Path(self.args.output_dir).glob(f"{CHECKPOINT_PREFIX}-*"), key=lambda p: int(p.name.split("-")[-1])
        )
        for old in folders[:-limit] if limit else []:
            shutil.rmtree(old)

    def _load_checkpoint(self, folder: Path) -> None:
        saved = json.loads((folder / PPO_STATE).read_text())
        if saved.get("train_batch_size") not in (None, self.batch_size) or saved.get("max_steps") != self.num_updates:
            raise RecipeError(
                f"checkpoint {folder} was written with {saved.get('max_steps')} updates of "
                f"{saved.get('train_batch_size')} answers, this run has {self.num_updates} of {self.batch_size}; "
                "resume with the same settings or start in a new output_dir"
            )
        self.accelerator.load_state(str(folder))
        flags = {k: getattr(self.state, k) for k in ("is_local_process_zero", "is_world_process_zero")}
        self.state = PPOState.load_from_json(str(folder / PPO_STATE))
        vars(self.state).update(flags)  # this process's, not the main process's that wrote the file
        if self.kl and self.state.kl_coef is not None:
            self.kl.coef = self.state.kl_coef
        self.loader.restore(json.loads((folder / DATA_POSITION).read_text()))

    # --- saving ---------------------------------------------------------------------------------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The policy alone as a plain Hugging Face model (or LoRA adapter) and the tokenizer, under any engine."""
        out = str(output_dir or self.args.output_dir)
        state = self.accelerator.get_state_dict(self.model)  # every rank takes part (ZeRO-3 gathers)
        if self.accelerator.is_main_process:
            policy = self.accelerator.unwrap_model(self.model).policy
            weights = {k.removeprefix("policy."): v for k, v in state.items() if k.startswith("policy.")}
            with on_this_process_only():
                policy.save_pretrained(out, state_dict=weights)
            self.tokenizer.save_pretrained(out)
        self.accelerator.wait_for_everyone()

    def create_model_card(self, *args, **kwargs) -> None:
        """The stage writes the model card when it finishes."""


def disable_dropout(model: nn.Module) -> None:
    """Dropout off: the log-probs that sampled and the ones that learn must come from the same function."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
