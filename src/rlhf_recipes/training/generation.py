"""Batched generation with left padding, as every stage that samples from a policy needs it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .config import RecipeError
from .context import context_length


@dataclass
class Completion:
    text: str
    ended: bool  # stopped at EOS rather than at the token limit
    num_tokens: int


def completion(tokenizer, new_tokens: list[int]) -> Completion:
    """A continuation's tokens as its text: cut at EOS, padding dropped (a model or a counted n-gram's alike)."""
    ended = tokenizer.eos_token_id in new_tokens
    kept = new_tokens[: new_tokens.index(tokenizer.eos_token_id)] if ended else new_tokens
    kept = [t for t in kept if t != tokenizer.pad_token_id]
    return Completion(tokenizer.decode(kept, skip_special_tokens=True), ended, len(kept))


@torch.no_grad()
def complete(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int,
    do_sample: bool = False,
    temperature: float = 1.0,
    batch_size: int = 128,
) -> list[Completion]:
    """Continue each prompt; the text excludes the prompt and everything from EOS on. Large batches: on a CPU a
    tiny model's generation is mostly per-step overhead (512 samples: 5.8 s in batches of 32, 5.0 s of 128)."""
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    model.eval()
    out: list[Completion] = []
    try:
        for i in tqdm(
            range(0, len(prompts), batch_size), desc="generating", unit="batch", disable=len(prompts) <= batch_size
        ):
            batch = tokenizer(
                prompts[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(model.device)
            sampling = (
                {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
                if do_sample
                else {"do_sample": False}
            )
            room = context_length(model) - batch["input_ids"].shape[1]
            if room <= 0:
                raise RecipeError(
                    f"a prompt of {batch['input_ids'].shape[1]} tokens fills the model's context of "
                    f"{context_length(model)}; shorten the prompts"
                )
            # every caller holds a whole model; under ZeRO-3 transformers would otherwise wait for the other ranks
            ids = model.generate(
                **batch,
                max_new_tokens=min(max_new_tokens, room),
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                synced_gpus=False,
                **sampling,
            )
            out += [completion(tokenizer, row) for row in ids[:, batch["input_ids"].shape[1] :].tolist()]
    finally:
        tokenizer.padding_side = side
    return out
