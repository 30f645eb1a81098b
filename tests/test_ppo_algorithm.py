"""The pieces of the project's PPO against values worked by hand (rlhf_recipes.training.ppo.algorithm)."""

import math

import pytest
import torch

from rlhf_recipes.training.ppo import algorithm as ppo

T = torch.tensor


def test_kl_estimators():
    logprobs, ref = T([-1.0, -2.0]), T([-2.0, -2.0])
    assert ppo.kl_per_token(logprobs, ref, "k1").tolist() == [1.0, 0.0]  # log p - log q
    # k3 = q/p - 1 - log(q/p); log(q/p) = -1: e^-1 - 1 + 1 = e^-1, never negative
    assert ppo.kl_per_token(logprobs, ref, "k3").tolist() == pytest.approx([math.exp(-1), 0.0])
    assert ppo.kl_per_token(ref, logprobs, "k1")[0] == -1.0 and ppo.kl_per_token(ref, logprobs, "k3")[0] > 0
    with pytest.raises(ValueError, match="k1 or k3"):
        ppo.kl_per_token(logprobs, ref, "k2")


def test_answers_end_at_the_first_stop_token():
    stop, pad = 2, 0
    responses = T([[5, 2, 7, 2], [2, 3, 4, 5], [3, 4, 5, 6]])
    ended = ppo.truncate_after_stop(responses, stop, pad)
    assert ended.tolist() == [[5, 2, 0, 0], [2, 0, 0, 0], [3, 4, 5, 6]]
    assert ppo.last_token_index(ended, pad).tolist() == [1, 0, 3]  # the stop token is the last real one


def test_the_score_enters_one_step_after_the_last_token_and_kl_on_every_token():
    kl = T([[0.1, 0.2, 0.0, 0.0], [0.1, 0.1, 0.1, 0.1]])
    rewards, kl_reward = ppo.rewards_with_kl(T([1.0, 2.0]), kl, kl_coef=0.5, last=T([1, 3]))
    assert kl_reward.flatten().tolist() == pytest.approx([-0.05, -0.1, 0, 0] + [-0.05] * 4)
    # an answer that fills the whole length gets its score on its last token
    assert rewards.flatten().tolist() == pytest.approx([-0.05, -0.1, 1.0, 0, -0.05, -0.05, -0.05, 1.95])


def test_generalized_advantages():
    rewards, values = T([[0.0, 0.0, 1.0]]), T([[0.5, 0.5, 0.0]])
    # gamma 1, lam 0.5: A2 = 1; A1 = (0 + 0 - 0.5) + 0.5 * 1 = 0; A0 = (0 + 0.5 - 0.5) + 0.5 * 0 = 0
    advantages, returns = ppo.generalized_advantages(rewards, values, gamma=1.0, lam=0.5)
    assert advantages[0].tolist() == pytest.approx([0.0, 0.0, 1.0]) and returns[0].tolist() == pytest.approx(
        [0.5, 0.5, 1.0]
    )
    # gamma 0.9, lam 1: the returns are the discounted sums of rewards, 0.81, 0.9, 1
    advantages, returns = ppo.generalized_advantages(rewards, values, gamma=0.9, lam=1.0)
    assert advantages[0].tolist() == pytest.approx([0.31, 0.4, 1.0]) and returns[0].tolist() == pytest.approx(
        [0.81, 0.9, 1.0]
    )


def test_masked_whitening_ignores_what_the_mask_leaves_out():
    values, mask = T([1.0, 2.0, 3.0, 100.0]), T([True, True, True, False])
    assert ppo.masked_mean(values, mask) == 2.0
    assert ppo.masked_var(values, mask) == pytest.approx(1.0)  # (1 + 0 + 1) / (3 - 1)
    assert ppo.masked_whiten(values, mask)[:3].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-6)
    assert ppo.masked_whiten(values, mask, shift_mean=False)[:3].tolist() == pytest.approx([1.0, 2.0, 3.0], abs=1e-6)


def test_clipped_policy_loss_takes_the_pessimistic_side():
    old, mask = T([0.0, 0.0, 0.0]), T([True, True, True])
    new, advantages = T([math.log(1.5), math.log(0.5), math.log(0.5)]), T([1.0, -1.0, 1.0])
    loss, stats = ppo.clipped_policy_loss(new, old, advantages, mask, cliprange=0.2)
    # ratio 1.5, A 1: max(-1.5, -1.2) = -1.2 (clipped); ratio 0.5, A -1: max(0.5, 0.8) = 0.8 (clipped);
    # ratio 0.5, A 1: max(-0.5, -0.8) = -0.5 (not clipped)
    assert loss.item() == pytest.approx((-1.2 + 0.8 - 0.5) / 3)
    assert stats["clipfrac"].item() == pytest.approx(2 / 3)
    assert stats["ratio"].item() == pytest.approx((1.5 + 0.5 + 0.5) / 3)
    same, stats = ppo.clipped_policy_loss(old, old, advantages, mask, cliprange=0.2)
    assert stats["approxkl"] == 0 and stats["clipfrac"] == 0 and same.item() == pytest.approx(-1 / 3)


def test_clipped_value_loss():
    loss, clipfrac = ppo.clipped_value_loss(T([1.0]), T([0.0]), T([1.0]), T([True]), cliprange_value=0.2)
    # the clipped value is 0.2: its error 0.64 beats the unclipped 0; half of it
    assert loss.item() == pytest.approx(0.32) and clipfrac.item() == 1.0
    loss, clipfrac = ppo.clipped_value_loss(T([0.1]), T([0.0]), T([1.0]), T([True]), cliprange_value=0.2)
    assert loss.item() == pytest.approx(0.5 * 0.81) and clipfrac.item() == 0.0


def test_entropy_logprobs_and_explained_variance():
    assert ppo.entropy_from_logits(torch.zeros(4)).item() == pytest.approx(math.log(4))
    assert ppo.token_logprobs(torch.zeros(1, 2, 4), T([[0, 3]]))[0].tolist() == pytest.approx([-math.log(4)] * 2)
    targets, mask = T([1.0, 2.0, 3.0]), T([True, True, True])
    assert ppo.explained_variance(targets, targets, mask).item() == pytest.approx(1.0)
    assert ppo.explained_variance(torch.full((3,), 2.0), targets, mask).item() == pytest.approx(0.0, abs=1e-6)


def test_adaptive_kl_moves_the_coefficient_toward_the_target_clipped():
    controller = ppo.AdaptiveKLController(0.1, target=6.0, horizon=10000)
    controller.update(kl=12.0, episodes=100)  # the gap is clipped to +20%: 0.1 * (1 + 0.2 * 100 / 10000)
    assert controller.coef == pytest.approx(0.1002)
    controller = ppo.AdaptiveKLController(0.1, target=6.0, horizon=10000)
    controller.update(kl=5.4, episodes=100)  # 10% below target: 0.1 * (1 - 0.1 * 0.01)
    assert controller.coef == pytest.approx(0.0999)
