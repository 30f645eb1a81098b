"""Parity of the project's PPO with TRL 1.12's PPOTrainer, update by update, on identical rollouts.

Both trainers start from the same four models and settings. TRL samples; its prompts and answers are
recorded and replayed into ours, so the two score and learn from the same tokens. After each update the
test compares the reward model's scores, the KL, the policy and value losses, and every weight of the
policy and the value model.

Tolerance: TRL reads the sampling log-probs off `generate`'s scores (with the KV cache), ours from a
forward pass over the whole sequence; in float32 the two differ by ~1e-6. Through Adam (update ~ lr *
g / |g|) such a difference in a gradient moves a weight by at most ~lr * 1e-3 relative per step where
the gradient is tiny, so weights are compared to 1e-5 absolute after two updates at lr 5e-5, and the
logged figures to 1e-4 relative. A mismatch in any formula (KL, GAE, whitening, clipping, masks) moves
them by orders of magnitude more.

TRL 1.12 is the last TRL with PPO: where it is not installed this test is skipped, and `make ppo-parity`
runs it in a scratch environment that has it. `PARITY_TABLE=path` writes the side-by-side as Markdown.
"""

import os
from pathlib import Path

import pytest
import torch

from conftest import ppo_args, stage
from rlhf_recipes.training.ppo import PPOConfig, PPOTrainer

trl_ppo = pytest.importorskip("trl.experimental.ppo", reason="TRL 1.12's PPOTrainer: run `make ppo-parity`")
from trl.experimental.ppo import ppo_trainer as trl_module  # noqa: E402

pytestmark = pytest.mark.slow

COMPARED = {"objective/scores": "score", "objective/kl": "KL", "loss/policy_avg": "policy loss",
            "loss/value_avg": "value loss", "objective/rlhf_reward": "RLHF reward"}  # fmt: skip
SETTINGS = dict(
    per_device_train_batch_size=8, gradient_accumulation_steps=1, total_episodes=16, num_ppo_epochs=2,
    response_length=16, stop_token="eos", missing_eos_penalty=1.0, kl_coef=0.2, temperature=0.7, cliprange=0.2,
    vf_coef=0.1, cliprange_value=0.2, gamma=1.0, lam=0.95, learning_rate=5e-5, lr_scheduler_type="linear",
    local_rollout_forward_batch_size=8, num_sample_generations=0, logging_steps=1, save_strategy="no",
    report_to="none", seed=0, bf16=False, use_cpu=True,
)  # fmt: skip


class Weights:
    """A callback keeping a copy of the trained weights after every update, under common names."""

    def __init__(self) -> None:
        self.trainer, self.after = None, []

    def __getattr__(self, event):
        return lambda *a, **k: None

    def keep(self) -> None:
        module = self.trainer.accelerator.unwrap_model(self.trainer.model)
        state = module.state_dict()  # TRL also lists the value backbone as critic_backbone: the same tensors
        self.after.append(
            {
                k.replace("value_model.", "value."): v.detach().clone()
                for k, v in state.items()
                if not k.startswith("critic_backbone.")
            }
        )

    def on_train_begin(self, args, state, control, **kwargs):
        self.keep()  # the weights before the first update

    def on_step_end(self, args, state, control, **kwargs):
        self.keep()


def models(world_dir, sft_model, reward_model, out):
    ppo, _ = stage("ppo").from_argv(ppo_args(world_dir, sft_model[0], reward_model[0], out))
    ppo.prepare()
    return ppo


class RecordedNumpy:
    """TRL's module-level `np`, with the minibatch shuffles it draws recorded (to replay into ours)."""

    def __init__(self, numpy) -> None:
        self.numpy, self.orders = numpy, []
        self.random = self

    def permutation(self, n):
        self.orders.append(self.numpy.random.permutation(n))
        return self.orders[-1]

    def __getattr__(self, name):
        return getattr(self.numpy, name)


def run_trl(ppo, settings, out, monkeypatch):
    recorded, weights = [], Weights()
    generate = trl_module.batch_generation
    numpy = RecordedNumpy(trl_module.np)
    monkeypatch.setattr(trl_module, "np", numpy)

    def recording(model, queries, *args, **kwargs):
        query_responses, logits = generate(model, queries, *args, **kwargs)
        recorded.append((queries.clone(), query_responses[:, queries.size(1) :].clone()))
        return query_responses, logits

    monkeypatch.setattr(trl_module, "batch_generation", recording)
    config = trl_ppo.PPOConfig(output_dir=str(out), gradient_checkpointing=False, **settings)
    trainer = trl_ppo.PPOTrainer(
        args=config, processing_class=ppo.tokenizer, model=ppo.policy, ref_model=ppo.ref, reward_model=ppo.reward,
        value_model=ppo.value, train_dataset=ppo.prompts.select_columns(["input_ids"]), callbacks=[weights],
    )  # fmt: skip
    weights.trainer = trainer
    trainer.train()
    logs = [e for e in trainer.state.log_history if "objective/scores" in e]
    return (recorded, numpy.orders), logs, weights.after


def run_ours(ppo, settings, out, rollouts):
    weights = Weights()
    config = PPOConfig(output_dir=str(out), activation_checkpointing=False, **settings)
    trainer = PPOTrainer(
        args=config, processing_class=ppo.tokenizer, model=ppo.policy, ref_model=ppo.ref, reward_model=ppo.reward,
        value_model=ppo.value, train_dataset=ppo.prompts.select_columns(["input_ids"]), callbacks=[weights],
    )  # fmt: skip
    weights.trainer = trainer
    recorded, orders = rollouts
    replay, shuffles = iter(recorded), iter(orders)
    trainer._prompts = lambda: ({"input_ids": queries} for queries, _ in recorded)
    trainer.generate = lambda queries: next(replay)[1]
    trainer.minibatch_order = lambda: next(shuffles)
    trainer.train()
    logs = [e for e in trainer.state.log_history if "objective/scores" in e]
    return logs, weights.after


@pytest.mark.parametrize(
    "variant",
    [{}, {"kl_estimator": "k3", "whiten_rewards": True}, {"num_mini_batches": 2}],
    ids=["defaults", "k3-whitened-rewards", "two-minibatches"],
)
def test_ppo_matches_trl_1_12_update_by_update(variant, world_dir, sft_model, reward_model, tmp_path, monkeypatch):
    settings = {**SETTINGS, **variant}
    torch.manual_seed(0)
    rollouts, trl_logs, trl_weights = run_trl(models(world_dir, sft_model, reward_model, tmp_path / "a"), settings,
                                              tmp_path / "trl", monkeypatch)  # fmt: skip
    monkeypatch.undo()
    our_logs, our_weights = run_ours(models(world_dir, sft_model, reward_model, tmp_path / "b"), settings,
                                     tmp_path / "ours", rollouts)  # fmt: skip
    assert len(trl_logs) == len(our_logs) == 2
    rows = []
    for update in (1, 2):
        theirs, ours = trl_logs[update - 1], our_logs[update - 1]
        for key, name in COMPARED.items():
            rows.append((update, name, theirs[key], ours[key]))
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-6), (update, key)
        before, w_theirs, w_ours = trl_weights[update - 1], trl_weights[update], our_weights[update]
        assert w_theirs.keys() == w_ours.keys()
        moved = [largest_and_mean({k: w[k] - before[k] for k in before}) for w in (w_theirs, w_ours)]
        gap = largest_and_mean({k: w_theirs[k] - w_ours[k] for k in w_theirs})
        rows += [(update, "weight change in the update: largest", moved[0][0], moved[1][0])]
        rows += [(update, "weight change in the update: mean", moved[0][1], moved[1][1])]
        rows += [(update, "weights, TRL minus ours: largest (mean)", gap[0], gap[1])]
        assert gap[0] < 0.25 * moved[0][0] and gap[1] < 0.01 * moved[0][1], (update, gap, moved)
    table = os.environ.get("PARITY_TABLE")
    if table:
        lines = [
            f"\n### {request_id(variant)}\n",
            "| update | figure | TRL 1.12 | rlhf-recipes |",
            "|---|---|---|---|",
        ]
        lines += [f"| {u} | {n} | {a:.6g} | {b:.6g} |" for u, n, a, b in rows]
        with Path(table).open("a") as f:
            f.write("\n".join(lines) + "\n")


def largest_and_mean(tensors: dict) -> tuple[float, float]:
    values = torch.cat([t.abs().flatten().float() for t in tensors.values()])
    return values.max().item(), values.mean().item()


def request_id(variant: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in variant.items()) or "the tiny recipe's settings"
