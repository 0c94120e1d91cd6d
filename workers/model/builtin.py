"""The builtin model: a tiny Llama trained from scratch on the easy range of the addition family.

Trained once on first start (minutes on two CPU cores), reproducible by seed, cached as an ordinary Hugging Face
directory (config, safetensors, tokenizer) with its evaluation report, `eval_report.json`, beside the weights.
The recipe, and the measurements behind each choice, are in docs/recipe.md.

    python -m workers.model.builtin --out data/models/builtin
    python -m workers.model.builtin --out /tmp/builtin --max-digits 4 --steps 750 --threads 1   # on a busy machine
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from tqdm import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from tasks.arithmetic_format import digit_count, AdditionExample, default_width, format_prompt, parse_answer
from tasks.arithmetic import Arithmetic
from tasks.base import mastered_length
from workers.model.tokenizer import build_tokenizer, save_tokenizer

REPORT_NAME = "eval_report.json"


@dataclass
class BuiltinConfig:
    max_digits: int = 4  # the easy range: operands of 1..max_digits digits
    layers: int = 4
    hidden: int = 128
    heads: int = 4
    intermediate: int = 512
    batch_size: int = 128
    steps: int = 750  # enough for 100% on the easy range and a partial foothold one digit past it
    lr: float = 1e-3  # peak learning rate, after a linear warmup, then cosine decay to lr * min_lr_ratio
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    max_extra_width: int = 2  # training zero-pads each example 0..this many digits wider than inference does
    hint_shift: int = 1  # training starts the hint letters up to this many letters late (inference: always "a")
    # A weak base (docs/recipe.md): lengths max_digits+1..scarce_digits get only scarce_count labelled problems
    # each, drawn as scarce_share of every batch; measured there with 9, 16 and 0.1. Off by default.
    scarce_digits: int = 0
    scarce_count: int = 0
    scarce_share: float = 0.0
    seed: int = 0
    threads: int = 2
    eval_count: int = 200  # held-out problems per length
    eval_lengths: list[int] = field(default_factory=list)  # default: 1..max_digits + 2


def build_model(config: BuiltinConfig, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    llama = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden, intermediate_size=config.intermediate,
        num_hidden_layers=config.layers, num_attention_heads=config.heads, num_key_value_heads=config.heads,
        max_position_embeddings=512, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(llama)


class Example(Protocol):
    """What training reads of an example (``tasks.Example``, ``AdditionExample``, a rendered one): read-only."""

    @property
    def prompt(self) -> str: ...

    @property
    def answer(self) -> str: ...


def encode_examples(tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
    """Right-padded batch; the loss sees only the answer and its end token, never the prompt."""
    rows, labels = [], []
    for example in examples:
        prompt = tokenizer(example.prompt)["input_ids"]
        answer = tokenizer(example.answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(prompt + answer)
        labels.append([-100] * len(prompt) + answer)
    length = max(map(len, rows))
    pad = tokenizer.pad_token_id
    return {
        "input_ids": torch.tensor([r + [pad] * (length - len(r)) for r in rows]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows]),
        "labels": torch.tensor([l + [-100] * (length - len(l)) for l in labels]),
    }


def family_options(config: BuiltinConfig) -> dict:
    """The arithmetic family's options that describe this model's labelled data (replayed by every round)."""
    return {"easy_digits": config.max_digits, "max_extra_width": config.max_extra_width,
            "hint_shift": config.hint_shift, "scarce_digits": config.scarce_digits,
            "scarce_count": config.scarce_count, "scarce_share": config.scarce_share}


def labelled_options(model_dir: str | Path) -> dict:
    """The arithmetic family's options for a model directory: from a builtin model's report, else the defaults."""
    report = Path(model_dir) / REPORT_NAME
    if not report.exists():
        return {}
    saved = json.loads(report.read_text())["config"]
    # An option missing from an older report takes the default, which is what that model was trained with.
    known = {k: v for k, v in saved.items() if k in BuiltinConfig.__dataclass_fields__}
    return family_options(BuiltinConfig(**known))


def easy_examples(config: BuiltinConfig, rng: random.Random, count: int) -> list[AdditionExample]:
    """The labelled data, as the family replays it: longer lengths weigh more (they hold nearly all distinct
    problems and all of the hard carries), the evaluation suite is never drawn."""
    return _labelled_family(tuple(family_options(config).items())).replay_examples(rng, count)


@functools.cache
def _labelled_family(options: tuple):
    """One arithmetic family per set of options (``()``: the defaults, whose evaluation suite is the loop's)."""
    return Arithmetic(**dict(options))


def cosine_lr(step: int, steps: int, lr: float, warmup: int, min_ratio: float) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def training_step(model, optimizer, params, batch: dict[str, torch.Tensor], lr: float,
                  amp: torch.dtype | None = None) -> float:
    """One optimizer step at learning rate ``lr``, gradients clipped to norm 1, the forward pass autocast to ``amp``
    where given; returns the loss."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    device = next(model.parameters()).device.type
    with torch.autocast(device, dtype=amp or torch.float32, enabled=amp is not None):
        loss = model(**batch).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    return loss.item()


def train(model, tokenizer, next_batch, steps: int, lr: float, warmup: int, min_ratio: float, desc: str,
          every: int = 0, callback=None) -> float | None:
    """The training loop shared by the bootstrap and by fine-tuning; returns the last smoothed loss (None after no
    step).

    `callback(step, loss)` runs every `every` steps (in eval mode), e.g. to measure accuracy along the way.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, betas=(0.9, 0.98))
    model.train()
    smoothed = None
    bar = tqdm(range(steps), desc=desc, mininterval=5)
    for step in bar:
        loss = training_step(model, optimizer, params, encode_examples(tokenizer, next_batch()),
                             cosine_lr(step, steps, lr, warmup, min_ratio))
        smoothed = loss if smoothed is None else 0.98 * smoothed + 0.02 * loss
        bar.set_postfix(loss=f"{smoothed:.4f}", refresh=False)
        if callback and every and (step + 1) % every == 0:
            model.eval()
            callback(step + 1, smoothed)
            model.train()
    model.eval()
    return smoothed


@torch.no_grad()
def generate_completions(model, tokenizer, prompts: list[str], max_new_tokens: int, samples: int = 1,
                         temperature: float = 0.0, batch_size: int = 256) -> list[list[str]]:
    """`samples` completions per prompt: greedy when temperature is 0, else sampled."""
    out = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True)
        sampling = {"do_sample": True, "temperature": temperature, "top_k": 0} if temperature > 0 else {"do_sample": False}
        ids = model.generate(**batch, max_new_tokens=max_new_tokens, num_return_sequences=samples,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **sampling)
        texts = tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        out += [texts[i:i + samples] for i in range(0, len(texts), samples)]
    return out


def heldout_problems(digits: int, count: int) -> list[tuple[int, int]]:
    """The arithmetic family's evaluation suite: the same problems the loop measures, never trained on."""
    return [(p.data["a"], p.data["b"]) for p in _labelled_family(()).eval_suite(digits)[:count]]


def is_heldout(a: int, b: int) -> bool:
    family = _labelled_family(())
    return family.problem(a, b).sample_id in family._eval_ids(digit_count(a, b))


def evaluate(model, tokenizer, lengths: list[int], count: int = 200) -> dict[int, float]:
    """Greedy exact-match accuracy on the held-out problems of each length."""
    accuracy = {}
    for digits in lengths:
        problems = heldout_problems(digits, count)
        prompts = [format_prompt(a, b) for a, b in problems]
        completions = generate_completions(model, tokenizer, prompts, max_new_tokens=2 * (digits + 1) + 1)
        right = sum(parse_answer(c[0], default_width(a, b)) == a + b for c, (a, b) in zip(completions, problems))
        accuracy[digits] = right / len(problems)
    return accuracy


def bootstrap(config: BuiltinConfig, out_dir: str | Path) -> dict:
    """Train from scratch, save model + tokenizer + report to `out_dir`, and return the report."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = random.Random(config.seed)
    tokenizer = build_tokenizer()
    model = build_model(config, tokenizer)
    started = time.time()
    loss = train(model, tokenizer, lambda: easy_examples(config, rng, config.batch_size), config.steps, config.lr,
                 config.warmup_steps, config.min_lr_ratio, desc="bootstrap")
    minutes = (time.time() - started) / 60
    lengths = config.eval_lengths or list(range(1, max(config.max_digits, config.scarce_digits) + 3))
    accuracy = evaluate(model, tokenizer, lengths, config.eval_count)
    report = {"config": asdict(config), "parameters": model.num_parameters(), "train_minutes": round(minutes, 2),
              "final_loss": loss, "accuracy": accuracy, "mastered_length": mastered_length(accuracy)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    save_tokenizer(tokenizer, out)
    (out / REPORT_NAME).write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="directory to save the model, tokenizer and eval report")
    for name, value in asdict(BuiltinConfig()).items():
        if not isinstance(value, list):
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    report = bootstrap(BuiltinConfig(**args), out)
    print(json.dumps({k: report[k] for k in ("train_minutes", "accuracy", "mastered_length")}, indent=2))
    return report


if __name__ == "__main__":
    main()
