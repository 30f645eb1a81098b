"""The arithmetic of PPO for language models, as pure functions over padded [batch, response] tensors.

Written from the papers (Schulman et al. 2017, PPO; Schulman et al. 2016, GAE; Ziegler et al. 2019 and
Stiennon et al. 2020 for the per-token KL penalty and the adaptive controller) and unit-tested against
values worked by hand (tests/test_ppo_algorithm.py). Masks are True where a token counts.
"""

from __future__ import annotations

import torch

# a log-prob written where a response has ended: the same in policy and reference, so its KL is 0
ENDED_LOGPROB = 1.0
# added to the temperature before dividing the logits, so temperature 0 cannot divide by zero
TEMPERATURE_EPS = 1e-7


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum()


def masked_var(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance of the counted entries (Bessel's correction once there are two or more)."""
    count = mask.sum()
    var = masked_mean((values - masked_mean(values, mask)) ** 2, mask)
    return var * count / (count - 1) if count > 1 else var


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Scale the counted entries to unit variance; with `shift_mean` also to mean 0, else the mean is kept."""
    mean = masked_mean(values, mask)
    whitened = (values - mean) * torch.rsqrt(masked_var(values, mask) + 1e-8)
    return whitened if shift_mean else whitened + mean


def kl_per_token(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str) -> torch.Tensor:
    """Estimates of KL(policy || reference) per sampled token (http://joschu.net/blog/kl-approx.html):
    k1 = log p - log q (unbiased, can be negative per token); k3 = (q/p - 1) - log(q/p) (unbiased, >= 0)."""
    log_ratio = ref_logprobs - logprobs
    if estimator == "k1":
        return -log_ratio
    if estimator == "k3":
        return log_ratio.exp() - 1 - log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; use k1 or k3")


def truncate_after_stop(responses: torch.Tensor, stop_token_id: int, pad_token_id: int) -> torch.Tensor:
    """Every token after the first stop token becomes padding; the stop token itself stays."""
    is_stop = responses == stop_token_id
    after_stop = (is_stop.cumsum(dim=1) - is_stop.long()) > 0
    return responses.masked_fill(after_stop, pad_token_id)


def last_token_index(responses: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """Index of each response's last real token: just before its first padding (the last index if none)."""
    is_pad = responses == pad_token_id
    length = responses.size(1)
    positions = torch.arange(length, device=responses.device).expand_as(responses)
    first_pad = torch.where(is_pad, positions, torch.full_like(positions, length)).min(dim=1).values
    return first_pad - 1


def rewards_with_kl(
    scores: torch.Tensor, kl: torch.Tensor, kl_coef: float, last: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: -kl_coef * KL on every token, and the reward model's score one step after the
    answer's last token (at the last token when the answer fills the whole length).

    The step after the last token is the state that has read the whole answer, the one the reward model
    scored; its value is trained too, and with lam < 1 the last token's advantage bootstraps from it.
    Returns (rewards, the KL part alone).
    """
    kl_reward = -kl_coef * kl
    rewards = kl_reward.clone()
    rows = torch.arange(scores.size(0), device=scores.device)
    at = torch.where(last + 1 < rewards.size(1), last + 1, last)
    rewards[rows, at] += scores
    return rewards, kl_reward


def generalized_advantages(
    rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over each response (Schulman et al. 2016): A_t = delta_t + gamma * lam * A_{t+1}, with
    delta_t = r_t + gamma * V_{t+1} - V_t and nothing after the last step. Returns (advantages, returns),
    returns = advantages + values: the value head's targets. Values past the episode must be 0."""
    steps = rewards.size(1)
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(steps)):
        next_value = values[:, t + 1] if t + 1 < steps else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    return advantages, advantages + values


def clipped_policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, cliprange: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate (the pessimistic max of the two losses), averaged over counted tokens, and
    what to watch: the share of tokens clipped, the approximate KL to the sampling policy, the ratio."""
    log_ratio = logprobs - old_logprobs
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    stats = {
        "clipfrac": masked_mean((clipped > unclipped).float(), mask),
        "approxkl": 0.5 * masked_mean(log_ratio**2, mask),
        "ratio": masked_mean(ratio, mask),
    }
    return loss, stats


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cliprange_value: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Half the pessimistic squared error of the new value and of the value kept within `cliprange_value`
    of the old one; and the share of tokens where the clipped error was the larger."""
    clipped = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
    unclipped_error, clipped_error = (values - returns) ** 2, (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_error, clipped_error), mask)
    return loss, masked_mean((clipped_error > unclipped_error).float(), mask)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax over the last dimension."""
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probability of each chosen token under the logits."""
    return torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def explained_variance(predicted: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Var(targets - predicted) / Var(targets) over counted entries: 1 is a perfect value head, 0 one
    that predicts no better than the mean, negative one that is worse."""
    return 1 - masked_var(targets - predicted, mask) / (masked_var(targets, mask) + 1e-8)


class AdaptiveKLController:
    """Ziegler et al. 2019: move the KL coefficient toward a target KL, proportionally, clipped to +-20%
    of the gap per `horizon` episodes: coef *= 1 + clip(KL / target - 1, -0.2, 0.2) * episodes / horizon."""

    def __init__(self, coef: float, target: float, horizon: int) -> None:
        self.coef, self.target, self.horizon = coef, target, horizon

    def update(self, kl: float, episodes: int) -> None:
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.coef *= 1.0 + error * episodes / self.horizon
