"""The upstream workarounds hold to what they stand in for: the full-logits LM head on a CPU to TRL's own."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel
from trl.kernels import ChunkedLogProbFunction
from trl.trainer import utils
from trl.trainer.utils import add_fused_lm_head

from rlhf_recipes.compat import FullLogitsOnCPU, full_logits_on_cpu

FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")


def scored(function, inputs: dict, outputs: tuple) -> tuple[list, list]:
    """The function's per-token fields and the gradients of a loss that uses both differentiable ones."""
    leaves = {k: v.clone().requires_grad_(v.is_floating_point()) for k, v in inputs.items() if torch.is_tensor(v)}
    leaves.setdefault("bias", None)
    args = [leaves[k] for k in ("hidden", "weight", "bias", "targets")]
    fields = function.apply(*args, inputs["temperature"], 256, inputs["softcap"], inputs["scale"], outputs)
    log_probs, entropy = fields[0], fields[1]
    loss = (log_probs * torch.linspace(-1, 1, len(log_probs))).sum()
    if entropy is not None:
        loss = loss + 0.3 * entropy.sum()
    loss.backward()
    return list(fields), [leaves[k].grad for k in ("hidden", "weight", "bias") if leaves[k] is not None]


@pytest.mark.parametrize("temperature, softcap, scale, bias", [(1.0, None, 1.0, False), (0.7, 30.0, 0.5, True)])
@pytest.mark.parametrize("outputs", [("log_probs",), FIELDS])
def test_full_logits_score_as_trl_s_chunked_function(temperature, softcap, scale, bias, outputs):
    generator = torch.Generator().manual_seed(0)
    vocab, width, tokens = 700, 24, 37  # a vocabulary wider than TRL's tiles (256 here), in pieces
    inputs = {
        "hidden": torch.randn(tokens, width, generator=generator),
        "weight": torch.randn(vocab, width, generator=generator) * 0.5,
        "bias": torch.randn(vocab, generator=generator) if bias else None,
        "targets": torch.randint(0, vocab, (tokens,), generator=generator),
        "temperature": temperature,
        "softcap": softcap,
        "scale": scale,
    }
    ours, our_grads = scored(FullLogitsOnCPU, inputs, outputs)
    theirs, their_grads = scored(ChunkedLogProbFunction, inputs, outputs)
    for name, mine, trl in zip(FIELDS, ours, theirs):
        assert (mine is None) == (trl is None), name
        if trl is not None and trl.dtype == torch.bool:
            assert torch.equal(mine, trl), name
        elif trl is not None:
            torch.testing.assert_close(mine, trl, rtol=1e-4, atol=1e-5, msg=name)
    for mine, trl in zip(our_grads, their_grads, strict=True):
        torch.testing.assert_close(mine, trl, rtol=1e-4, atol=1e-5)


def test_the_label_is_top1_only_as_the_first_of_tied_largest_logits():
    from rlhf_recipes.compat import label_is_first_largest

    logits = torch.randn(8, 12, generator=torch.Generator().manual_seed(2))
    logits[:4, 3] = logits[:4, 7] = 9.0  # rows 0-3: logits 3 and 7 tie for the largest
    labels = torch.tensor([3, 7, 5, 7, 0, 1, 2, 3])
    labels[4:] = logits[4:].argmax(-1)
    labels[7] = (labels[7] + 1) % 12  # one row whose label is not the largest
    expected = logits.argmax(-1) == labels
    assert expected.tolist() == [True, False, False, False, True, True, True, False]
    assert torch.equal(label_is_first_largest(logits, labels), expected)


def test_full_logits_without_gradients_score_the_same():
    """Under no_grad (a reference model's scoring) the forward keeps nothing for a backward and scores the same."""
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(9, 16, generator=generator, requires_grad=True)
    weight = torch.randn(50, 16, generator=generator, requires_grad=True)
    targets = torch.randint(0, 50, (9,), generator=generator)
    args = (hidden, weight, None, targets, 1.0, 256, None, 1.0, FIELDS)
    with_grad = FullLogitsOnCPU.apply(*args)
    with torch.no_grad():
        without = FullLogitsOnCPU.apply(*args)
    assert with_grad[0].requires_grad and not without[0].requires_grad
    for name, a, b in zip(FIELDS, with_grad, without):
        assert torch.equal(a, b), name


def test_a_model_s_fused_head_scores_the_same_through_it(monkeypatch):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=300, n_positions=32, n_embd=32, n_layer=1, n_head=2)).eval()
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    ids = torch.randint(0, 300, (3, 20))
    labels = ids.clone()
    labels[:, :5] = -100
    monkeypatch.setattr(utils, "_ChunkedLogProbFunction", ChunkedLogProbFunction)
    trl = model(input_ids=ids, labels=labels, fused_lm_head=True)
    full_logits_on_cpu()
    assert utils._ChunkedLogProbFunction is FullLogitsOnCPU and FullLogitsOnCPU.trl_function is ChunkedLogProbFunction
    ours = model(input_ids=ids, labels=labels, fused_lm_head=True)
    torch.testing.assert_close(ours.loss, trl.loss)
    torch.testing.assert_close(ours.entropy, trl.entropy, rtol=1e-4, atol=1e-5)
    assert torch.equal(ours.is_top1, trl.is_top1) and torch.equal(ours.label_mask, trl.label_mask)


def test_muon_s_newton_schulz_runs_in_float32_on_a_cpu_and_matches_torch_s():
    from torch.optim import _muon

    from rlhf_recipes.compat import newton_schulz_in_float32_on_cpu

    grad = torch.randn(96, 32, generator=torch.Generator().manual_seed(0))
    coefficients = (_muon.DEFAULT_A, _muon.DEFAULT_B, _muon.DEFAULT_C)
    newton_schulz_in_float32_on_cpu()
    ours = _muon._zeropower_via_newtonschulz(grad, coefficients, _muon.DEFAULT_NS_STEPS, _muon.EPS)
    torch_s = _muon._zeropower_via_newtonschulz.in_bfloat16(grad, coefficients, _muon.DEFAULT_NS_STEPS, _muon.EPS)
    assert ours.dtype == torch.float32 and torch_s.dtype == torch.bfloat16 and ours.shape == grad.shape
    torch.testing.assert_close(ours, torch_s.float(), rtol=0, atol=2e-2)
    singular = torch.linalg.svdvals(ours)  # orthogonalised: every singular value near 1 (0.5 to 1.5 by design)
    assert singular.min() > 0.5 and singular.max() < 1.5


def test_deepspeed_s_cpu_all_reduce_op_serves_inference_only_and_is_not_built():
    """The op the workaround skips is built where its backend starts and used by inference_all_reduce only."""
    import importlib
    import inspect

    backend = importlib.import_module("deepspeed.comm.torch")  # `import ... as` would give `torch`, its global

    from rlhf_recipes.compat import no_deepspeed_inference_op_on_cpu

    assert "self.shm_comm_op = build_shm_op()" in inspect.getsource(backend.TorchBackend.__init__)
    methods = inspect.getsource(backend.TorchBackend).split("\n    def ")[1:]
    assert [m.split("(")[0] for m in methods if "shm_" in m] == ["__init__", "inference_all_reduce"]
    upstream = backend.build_shm_op
    try:
        no_deepspeed_inference_op_on_cpu()
        assert backend.build_shm_op() is None
    finally:
        backend.build_shm_op = upstream


def test_deepspeed_s_cpu_adam_is_built_without_debug_info_and_otherwise_as_upstream_builds_it():
    """Upstream builds CPU Adam with `-g` (the workaround's reason to exist); the workaround drops that flag and
    keeps every other one, in DeepSpeed's order. The offload test in test_deepspeed.py builds and trains with it."""
    from deepspeed.accelerator import get_accelerator

    from rlhf_recipes.compat import cpu_ops_built_without_debug_info

    builder = get_accelerator().create_op_builder("CPUAdamBuilder")
    upstream_class = type(builder).__mro__[1]
    assert upstream_class.__name__ == "CPUOpBuilder"
    upstream = upstream_class.cxx_args
    with_debug_info = builder.cxx_args()
    assert "-g" in with_debug_info and "-O3" in with_debug_info
    try:
        cpu_ops_built_without_debug_info()
        cpu_ops_built_without_debug_info()  # twice is once
        assert builder.cxx_args() == [arg for arg in with_debug_info if arg != "-g"]
    finally:
        upstream_class.cxx_args = upstream


def test_accelerate_s_package_checks_are_answered_once_and_the_same():
    """Upstream reads the package's METADATA at every call (the workaround's reason to exist); cached, every
    answer is the same, installed or not."""
    from accelerate.utils import imports

    from rlhf_recipes.compat import package_checks_cached

    upstream = imports._is_package_available
    names = ("peft", "deepspeed", "lomo_optim", "no_such_package_here")
    answers = [upstream(name) for name in names]
    assert answers[:2] == [True, True] and not answers[3]
    try:
        package_checks_cached()
        package_checks_cached()  # twice is once (a stage run in this process may have cached it already)
        cached = imports._is_package_available
        assert [cached(name) for name in names] == answers
        assert imports.is_peft_available() and imports.is_deepspeed_available()
        assert cached.cache_info().hits >= 2 and cached.__wrapped__ is not cached
        assert not hasattr(cached.__wrapped__, "cache_info")  # accelerate itself still does not cache
    finally:
        imports._is_package_available = upstream
