"""Plain PyTorch training loops: the yardstick `make bench` holds each recipe's trainer against.

Each loop trains its own copy of the stage's model on the rows the recipe's trainer trains on (the
trainer's own tokenized dataset), in batches of the same size padded to the longest row, with AdamW at
the same learning rate (or the recipe's own optimizer, as pretraining's Muon), the gradient clipped at the
recipe's `max_grad_norm` and, where the recipe uses it, the same autocast. Nothing else: no callbacks,
logging, metrics or scheduler; the speed a careful engineer gets by hand.
"""

from __future__ import annotations

import contextlib
import copy
import time

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader

from .timing import Round


def padded(rows: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and their attention mask, as long as the longest row."""
    ids = pad_sequence([torch.tensor(r) for r in rows], batch_first=True, padding_value=pad).to(device)
    mask = pad_sequence([torch.ones(len(r), dtype=torch.long) for r in rows], batch_first=True).to(device)
    return ids, mask


def completion_logps(model, ids, mask, completion_start: torch.Tensor) -> torch.Tensor:
    """Each row's summed log-probability of its tokens from `completion_start` on (padding excluded)."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    targets = ids[:, 1:]
    logps = torch.gather(logits.log_softmax(-1), 2, targets.unsqueeze(-1)).squeeze(-1)
    positions = torch.arange(1, ids.shape[1], device=ids.device)
    keep = (positions >= completion_start.unsqueeze(1)) & mask[:, 1:].bool()
    return (logps * keep).sum(-1)


class PlainLoop:
    """`steps` optimizer steps of `loss_fn` over batches of `rows`, timed as a `Round`.

    With `batch_order` (lists of row indices), every round trains on those batches from the first, as each
    `train()` of the recipe's trainer starts its seeded epoch over: both sides then time the same batches, which
    are padded to their longest row (SFT's 8-step rounds: 80 to 128 tokens). Otherwise, shuffled batches.
    """

    def __init__(
        self,
        model,
        rows: list[dict],
        batch_size: int,
        loss_fn,
        bf16: bool,
        *,
        learning_rate: float,
        max_grad_norm: float,
        optimizer=None,
        batch_order: list[list[int]] | None = None,
    ) -> None:
        self.model = model.train()
        self.rows, self.batch_order = rows, batch_order
        self.max_grad_norm = max_grad_norm
        self.optimizer = optimizer or torch.optim.AdamW(self.model.parameters(), lr=learning_rate, weight_decay=0.0)
        self.loader = DataLoader(rows, batch_size=batch_size, shuffle=True, collate_fn=list, drop_last=True)
        self.loss_fn, self.bf16 = loss_fn, bf16
        self.device = next(model.parameters()).device
        self.batches = iter(())

    def next_batch(self) -> list[dict]:
        batch = next(self.batches, None)
        if batch is None:
            self.batches = iter(self.loader)
            batch = next(self.batches)
        return batch

    def __call__(self, steps: int) -> Round:
        if self.batch_order is not None:
            self.batches = iter([[self.rows[i] for i in batch] for batch in self.batch_order])
        start = time.perf_counter()
        for _ in range(steps):
            autocast = torch.autocast(self.device.type, torch.bfloat16) if self.bf16 else contextlib.nullcontext()
            with autocast:
                loss = self.loss_fn(self.model, self.next_batch(), self.device)
            loss.backward()
            if self.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return Round(time.perf_counter() - start, steps)


def causal_lm_loss(pad: int):
    """Next-token loss on the rows' `labels` (-100 where the recipe trains on nothing)."""

    def loss(model, batch: list[dict], device) -> torch.Tensor:
        ids, mask = padded([row["input_ids"] for row in batch], pad, device)
        labels = [row.get("labels", row["input_ids"]) for row in batch]
        targets, _ = padded(labels, -100, device)
        return model(input_ids=ids, attention_mask=mask, labels=targets).loss

    return loss


def pairwise_reward_loss(pad: int):
    """Bradley-Terry: chosen and rejected in one batch, -log sigmoid(r_chosen - r_rejected)."""

    def loss(model, batch: list[dict], device) -> torch.Tensor:
        rows = [row["chosen_ids"] for row in batch] + [row["rejected_ids"] for row in batch]
        ids, mask = padded(rows, pad, device)
        rewards = model(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
        chosen, rejected = rewards.chunk(2)
        return -F.logsigmoid(chosen - rejected).mean()

    return loss


def dpo_loss(reference, pad: int, beta: float):
    """Sigmoid DPO: policy and frozen reference log-probs of prompt+chosen and prompt+rejected."""
    reference = copy.deepcopy(reference).eval().requires_grad_(False)

    def loss(model, batch: list[dict], device) -> torch.Tensor:
        prompts = [row["prompt_ids"] for row in batch] * 2
        answers = [row["chosen_ids"] for row in batch] + [row["rejected_ids"] for row in batch]
        ids, mask = padded([p + a for p, a in zip(prompts, answers)], pad, device)
        start = torch.tensor([len(p) for p in prompts], device=device)
        policy = completion_logps(model, ids, mask, start)
        with torch.no_grad():
            ref = completion_logps(reference, ids, mask, start)
        margin = (policy - ref).chunk(2)
        return -F.logsigmoid(beta * (margin[0] - margin[1])).mean()

    return loss


def real_tokens(rows: list[dict], columns: dict[str, int]) -> float:
    """Mean tokens per row that a step trains on: `columns` maps id columns to how often each is run."""
    return sum(times * sum(len(r[c]) for r in rows) for c, times in columns.items()) / len(rows)


def group_baseline_loss(reference, reward_model, tokenizer, config, eos_penalty: float, leave_one_out: bool):
    """RLOO or GRPO by hand: sample `num_generations` answers per prompt (with the KV cache), score them with
    the reward model (minus the missing-EOS penalty) and take each answer's advantage from its group, with the
    KL to the frozen reference where each algorithm puts it. RLOO (as TRL's trainer and the RLOO paper): the
    log-ratio summed over the answer comes off its reward, the baseline is the others' mean and the loss is per
    answer; on-policy, the log-probabilities come from the training pass itself. GRPO: the group's mean and
    std, and a k3 KL per token in the loss."""
    reference = copy.deepcopy(reference).eval().requires_grad_(False)
    pad, eos, group = tokenizer.pad_token_id, tokenizer.eos_token_id, config.num_generations

    def logps(model, ids, mask, start):
        logits = model(input_ids=ids, attention_mask=mask).logits[:, start - 1 : -1] / config.temperature
        return torch.gather(logits.log_softmax(-1), 2, ids[:, start:].unsqueeze(-1)).squeeze(-1)

    def loss(model, batch: list[dict], device) -> torch.Tensor:
        rows = [row["prompt_ids"] for row in batch for _ in range(group)]
        width = max(len(r) for r in rows)
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=(ids != pad).long(),
                do_sample=True,
                top_k=0,
                temperature=config.temperature,
                max_new_tokens=config.max_completion_length,
                pad_token_id=pad,
            )
            answer = out[:, width:]
            ended = (answer == eos).cumsum(1)
            keep = (ended == 0) | ((ended == 1) & (answer == eos))  # up to and with the first EOS
            mask = torch.cat([ids != pad, keep], 1).long()
            scores = reward_model(input_ids=out * mask + pad * (1 - mask), attention_mask=mask).logits[:, 0]
            scores = scores - eos_penalty * (ended[:, -1] == 0)
            ref = logps(reference, out, mask, width)
        policy = logps(model, out, mask, width)
        if leave_one_out:
            answer_logps = (policy * keep).sum(1)
            kl = answer_logps.detach() - (ref * keep).sum(1)
            grouped = (scores - config.beta * kl).view(-1, group)
            advantage = grouped - (grouped.sum(1, keepdim=True) - grouped) / (group - 1)
            return -(torch.exp(answer_logps - answer_logps.detach()) * advantage.view(-1)).mean()
        grouped = scores.view(-1, group)
        advantage = (grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-4)
        delta = ref - policy
        per_token = -torch.exp(policy - policy.detach()) * advantage.view(-1, 1) + config.beta * (
            delta.exp() - delta - 1
        )
        return ((per_token * keep).sum(1) / keep.sum(1).clamp(min=1)).mean()

    return loss
