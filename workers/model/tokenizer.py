"""A character-level tokenizer that is an ordinary Hugging Face tokenizer.

Every character of the vocabulary is one token, so digits and position hints never merge and an answer can be
read back character by character. It is a `PreTrainedTokenizerFast`, so `save_pretrained`/`AutoTokenizer` and any
HF or vLLM code path load it like any other model's tokenizer.
"""

from __future__ import annotations

import string
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]
# Digits, the position-hint letters and the operators of the arithmetic family.
CHARACTERS = string.digits + string.ascii_lowercase + string.ascii_uppercase + "+=*-,:. "


def build_tokenizer(characters: str = CHARACTERS) -> PreTrainedTokenizerFast:
    """One id per special token, then one id per character, in a fixed order so that ids are reproducible."""
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for character in characters:
        vocab.setdefault(character, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()  # characters join back with no spaces between them
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK, padding_side="left"
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: str | Path) -> None:
    tokenizer.save_pretrained(str(directory))


def load_tokenizer(directory: str | Path) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast.from_pretrained(str(directory))
