"""Muon for the weight matrices inside a transformer, AdamW for the rest, stepped as one optimizer.

Muon (Jordan et al. 2024; the optimizer of the modded-nanogpt speedruns) orthogonalises each matrix's
momentum with a few Newton-Schulz steps before the update. It suits 2-D weights inside the network only:
embeddings, the output head, biases and norms keep AdamW. `torch.optim.Muon` and `torch.optim.AdamW` do
the arithmetic (on a CPU the Newton-Schulz steps in float32: compat.py); this wrapper shares their
parameter groups, so the Trainer's learning-rate schedule, checkpoints and resume see one optimizer.
"""

from __future__ import annotations

from torch import nn
from torch.optim import AdamW, Muon, Optimizer

from ..compat import newton_schulz_in_float32_on_cpu


def split_for_muon(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(the trainable 2-D weights of the blocks, every other trainable parameter)."""
    outside = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    outside |= {id(p) for p in (head.parameters() if head is not None else ())}
    trainable = [p for p in model.parameters() if p.requires_grad]
    matrices = [p for p in trainable if p.ndim == 2 and id(p) not in outside]
    taken = {id(p) for p in matrices}
    return matrices, [p for p in trainable if id(p) not in taken]


class MuonWithAdamW(Optimizer):
    """Muon (at `muon_lr`, scaled to AdamW's update size: `match_rms_adamw`) on the blocks' matrices, AdamW
    (at `adamw_lr`) on everything else. The schedule scales both groups' rates alike."""

    def __init__(self, model: nn.Module, muon_lr: float, adamw_lr: float, betas, eps: float, weight_decay: float):
        matrices, others = split_for_muon(model)
        newton_schulz_in_float32_on_cpu()  # torch's bfloat16 iteration is 32x slower on a CPU without bf16 units
        self.muon = Muon(matrices, lr=muon_lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw")
        self.adamw = AdamW(others, lr=adamw_lr, betas=betas, eps=eps, weight_decay=weight_decay)
        super().__init__([*self.muon.param_groups, *self.adamw.param_groups], {})
        self.share_groups()

    def share_groups(self) -> None:
        """This optimizer's groups are theirs, so a schedule that sets its rates sets theirs. Optimizer copies
        the groups it is given, and loading a state dict (accelerate does on prepare) makes new ones."""
        self.param_groups = [*self.muon.param_groups, *self.adamw.param_groups]

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        self.muon.step()
        self.adamw.step()
        return loss

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.muon.load_state_dict(state_dict["muon"])
        self.adamw.load_state_dict(state_dict["adamw"])
        self.share_groups()
