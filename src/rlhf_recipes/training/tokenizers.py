"""The tokenizer stage's engine: a GPT-2-style byte-level BPE, and how well it fits the text it was trained on.

Byte-level BPE never meets an unknown character: one its vocabulary lacks falls back to its UTF-8 bytes,
one token each (a Chinese character: 3). Nothing fails, the text just costs 2-3 times the tokens and the
model must learn to spell characters from bytes; so the stage measures it, and says when it is high.
"""

from __future__ import annotations

import math
import sys
from collections import Counter

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from ..world.world import BILINGUAL, text_language
from .chat import CHAT_TEMPLATE, EOS_TOKEN, PAD_TOKEN

SAMPLE = 2000  # texts measured: enough for stable shares, seconds on a CPU
# Above this share of characters in byte pieces, about one token in ten or more goes to spelling characters
# out of bytes (each costs 2-3 tokens, not one or less): worth a larger vocabulary. English text, ASCII
# throughout, has none; a script the vocabulary covers has a few rare characters (under 1%).
HIGH_FALLBACK = 0.05


def train_bpe(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE on `texts`, with distinct EOS and PAD tokens (PPO needs them apart) and the chat template."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=True,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=EOS_TOKEN, eos_token=EOS_TOKEN, unk_token=EOS_TOKEN, pad_token=PAD_TOKEN
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def compression(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> float:
    """Characters per token over `texts`."""
    return sum(map(len, texts)) / sum(len(tokenizer(t).input_ids) for t in texts)


def split_characters(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> Counter:
    """How often each character of `texts` is split over two or more tokens: spelled in bytes.

    A token's offsets span every character it holds a byte of, so a character two tokens' spans both
    cover is split. A whole character inside a longer byte piece counts as whole.
    """
    split = Counter()
    for text in texts:
        cover = Counter(i for start, end in tokenizer(text, return_offsets_mapping=True).offset_mapping
                        for i in range(start, end))  # fmt: skip
        split.update(text[i] for i, n in cover.items() if n > 1)
    return split


def byte_fallback(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> tuple[float, int | None]:
    """The share of characters of `texts` split into byte tokens, and a vocabulary size to try when it is high.

    The suggestion: a split character becomes one token after at most two merges (a 3-byte character), so
    the vocabulary needs about two entries for each of the commonest split characters that together bring
    the share under HIGH_FALLBACK; rounded up to a power of two, for the merges English words claim too.
    """
    split, chars = split_characters(tokenizer, texts), sum(map(len, texts))
    share = split.total() / chars
    if share <= HIGH_FALLBACK:
        return share, None
    left, needed = split.total(), 0
    for _, count in split.most_common():
        if left <= HIGH_FALLBACK * chars:
            break
        left, needed = left - count, needed + 1
    return share, 2 ** math.ceil(math.log2(len(tokenizer) + 2 * needed))


def measure(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> dict:
    """Characters per token (by language, where the text is in both), the corpus in tokens, and byte fallback.

    Prints one line suggesting a vocabulary size when more than HIGH_FALLBACK of the characters are split.
    """
    sample = texts[:SAMPLE]
    chars_per_token = compression(tokenizer, sample)
    share, suggested = byte_fallback(tokenizer, sample)
    metrics = {
        "vocab_size": len(tokenizer),
        "chars_per_token": round(chars_per_token, 2),
        "corpus_tokens_estimate": round(sum(map(len, texts)) / chars_per_token),
        "byte_fallback_share": round(share, 4),
    }
    by_language = {lang: [t for t in sample if text_language(t) == lang] for lang in BILINGUAL}
    if all(by_language.values()):  # text in both scripts: how well each is compressed
        metrics["chars_per_token_by_language"] = {
            k: round(compression(tokenizer, v), 2) for k, v in by_language.items()
        }
    if suggested:
        print(
            f"tokenizer: {share:.0%} of the characters are split into byte tokens (each costs 2-3 tokens) at "
            f"vocab_size {len(tokenizer)}; try vocab_size {suggested}",
            file=sys.stderr,
        )
    return metrics
