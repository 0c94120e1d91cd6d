"""What every role needs to run any local Hugging Face causal LM the same way: the tokenizer made ready for
batched generation and training, the prompt in the model's chat template where it has one, the LoRA target modules
that exist in its architecture, and the dtype for the device."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase
from transformers.pytorch_utils import Conv1D

log = logging.getLogger(__name__)

# The projections of Llama-like models (Llama, Qwen2, Mistral, the builtin model). Where a model has none of them
# (GPT-2's c_attn, c_proj, c_fc), every linear layer but the output head is adapted (peft's "all-linear").
LLAMA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def load_tokenizer(model_dir: str | Path, *, padding_side: str) -> PreTrainedTokenizerBase:
    """The model's tokenizer with a pad token (its end-of-sequence token where it has none, as GPT-2 and many base
    models) and the padding side the caller needs (left to generate, right to train)."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.eos_token_id is None:
        raise ValueError(f"the tokenizer of {model_dir} has no end-of-sequence token: generation could not stop")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def render(tokenizer: PreTrainedTokenizerBase, text: str, chat: bool) -> str:
    """``text`` as the model reads it: a user's message in the chat template, where the family writes chat
    prompts and the model has a template; else the text itself."""
    if not chat or not getattr(tokenizer, "chat_template", None):  # a plain tokenizer has the attribute unset
        return text
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    assert isinstance(rendered, str)  # one conversation, not tokenized: its text
    bos = tokenizer.bos_token
    if bos and rendered.startswith(bos) and tokenizer("")["input_ids"][:1] == [tokenizer.bos_token_id]:
        rendered = rendered[len(bos):]  # the tokenizer adds it again (Llama 3, Mistral): one, not two
    return rendered


def lora_targets(model: torch.nn.Module, requested: list[str] | None) -> list[str] | str:
    """The requested module names that exist in the model (linear layers, and GPT-2's Conv1D); "all-linear" where
    none does (or none was asked). A requested name the model lacks is logged."""
    layers = (torch.nn.Linear, Conv1D)
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, layers)}
    present = [name for name in requested or [] if name in names]
    missing = [name for name in requested or [] if name not in names]
    if present and missing:
        log.warning("LoRA: the model has no %s; adapting %s", ", ".join(missing), ", ".join(present))
    return present or "all-linear"


def autocast_dtype(device: torch.device, dtype: str) -> torch.dtype | None:
    """The dtype training autocasts to: ``auto`` is bfloat16 on a GPU that has it and float32 elsewhere (a CPU's
    bfloat16 helps larger models on CPUs with AMX; the builtin model gained nothing from it), or as named."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    return {"float32": None, "bfloat16": torch.bfloat16}[dtype]
