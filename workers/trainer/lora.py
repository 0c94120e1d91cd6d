"""LoRA training on a dataset snapshot: the function the trainer job calls.

The adapter is a plain PEFT directory (``adapter_config.json`` + ``adapter_model.safetensors``),
loadable by ``PeftModel.from_pretrained`` and by vLLM's LoRA support; ``training.json`` beside it
records the full training config, the snapshot id, the parent adapter and the base model.
Training checkpoints every ``checkpoint_every`` steps and resumes from the last checkpoint when
started again on the same output directory.

Two ways to start: from the base model (a fresh adapter every round; ReST-EM found this
generalizes better) or from the parent adapter (continue training it).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from dataclasses import dataclass
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file
from tqdm import tqdm
from transformers import AutoModelForCausalLM

from workers.generator.engine import pick_device
from workers.model.builtin import Example, cosine_lr, encode_examples, training_step
from workers.model.hf import LLAMA_PROJECTIONS, autocast_dtype, load_tokenizer, lora_targets, render

log = logging.getLogger(__name__)
TRAINING_RECORD = "training.json"


@dataclass(frozen=True)
class Rendered:
    prompt: str
    answer: str


class LoraTrainingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rank: int = Field(default=16, ge=1, le=512, description="LoRA rank r of every adapted matrix.")
    alpha: int = Field(default=32, ge=1, description="LoRA scaling numerator; the update is scaled by alpha / rank.")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA branch.")
    target_modules: list[str] = Field(
        default=LLAMA_PROJECTIONS,
        description="Names of the linear layers that get an adapter; those the model lacks are left out, and a model "
        "with none of them adapts every linear layer (peft's all-linear: GPT-2's c_attn, c_proj, c_fc).",
    )
    init: Literal["base", "parent"] = Field(
        default="base", description="Start a fresh adapter on the base model, or continue the parent adapter."
    )
    steps: int = Field(default=300, ge=1, description="Optimizer steps.")
    batch_size: int = Field(default=64, ge=1, description="Examples per step.")
    lr: float = Field(default=2e-3, gt=0, description="Peak learning rate (linear warmup, cosine decay).")
    warmup_steps: int = Field(default=20, ge=0)
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1, description="Final learning rate as a share of the peak.")
    replay_share: float = Field(
        default=0.25, ge=0, le=1, description="Share of every batch drawn from the original easy data."
    )
    checkpoint_every: int = Field(default=100, ge=1, description="Steps between resumable checkpoints.")
    seed: int = 0
    device: str | None = Field(default=None, description="cuda or cpu; default: cuda when available.")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto", description="Autocast dtype of the forward pass; auto: bfloat16 on a GPU that has it, else "
        "float32 (bfloat16 pays on CPUs with AMX for models of tens of millions of parameters, not for the builtin).",
    )
    gradient_checkpointing: bool = Field(default=False, description="Recompute activations in the backward pass: "
                                         "less memory for longer sequences, about a third more time.")


def train_lora(
    *,
    base_model: str | Path,
    examples: Sequence[Example],
    out_dir: str | Path,
    config: LoraTrainingConfig,
    snapshot_id: str | None = None,
    parent_adapter: str | Path | None = None,
    replay: Callable[[random.Random, int], Sequence[Example]] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    chat: bool = False,
) -> dict:
    """Train an adapter and save it to ``out_dir``; returns the training record. ``chat``: the examples' prompts are a
    user's message, put in the model's chat template where it has one (as the generator asks them)."""
    out = Path(out_dir)
    checkpoint = out / "checkpoint"
    if not examples and not (replay and config.replay_share > 0):
        raise ValueError("nothing to train on: the snapshot is empty and no replay data is mixed in")
    if config.init == "parent" and parent_adapter is None:
        raise ValueError("init='parent' needs the parent adapter's directory")

    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    tokenizer = load_tokenizer(base_model, padding_side="right")  # the loss ignores the padding
    base = AutoModelForCausalLM.from_pretrained(str(base_model))
    if config.gradient_checkpointing:
        base.gradient_checkpointing_enable()
        base.enable_input_require_grads()  # the frozen embeddings' output must carry gradients to the adapters
    if config.init == "parent":
        model = PeftModel.from_pretrained(base, str(parent_adapter), is_trainable=True)
    else:
        lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                          target_modules=lora_targets(base, config.target_modules), task_type="CAUSAL_LM")
        model = get_peft_model(base, lora)
    model.to(device)
    amp = autocast_dtype(device, config.dtype)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0, betas=(0.9, 0.98))

    rng = random.Random(config.seed)
    start_step, smoothed = 0, None
    if (checkpoint / "state.pt").exists():
        start_step, smoothed = _resume(checkpoint, model, optimizer, rng)
        log.info("resuming %s at step %d", out, start_step)

    n_replay = round(config.batch_size * config.replay_share) if replay else 0
    if not examples:
        n_replay = config.batch_size

    def next_batch() -> list[Example]:
        batch = list(replay(rng, n_replay)) if replay and n_replay else []  # n_replay > 0 only with a replay
        batch += rng.choices(examples, k=config.batch_size - len(batch)) if examples else []
        return [Rendered(render(tokenizer, e.prompt, chat), e.answer) for e in batch] if chat else batch

    started = time.time()
    model.train()
    bar = tqdm(range(start_step, config.steps), initial=start_step, total=config.steps, desc="lora", mininterval=5)
    stopped = False
    for step in bar:
        if should_stop and should_stop():
            _checkpoint(checkpoint, model, optimizer, rng, step, smoothed)
            stopped = True
            break
        batch = {k: v.to(device) for k, v in encode_examples(tokenizer, next_batch()).items()}
        loss = training_step(model, optimizer, params, batch,
                             cosine_lr(step, config.steps, config.lr, config.warmup_steps, config.min_lr_ratio), amp)
        smoothed = loss if smoothed is None else 0.95 * smoothed + 0.05 * loss
        bar.set_postfix(loss=f"{smoothed:.4f}", refresh=False)
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            _checkpoint(checkpoint, model, optimizer, rng, step + 1, smoothed)
        if progress:
            progress(step + 1, config.steps, smoothed)
    model.eval()
    if stopped:
        return {"stopped": True, "step": step, "checkpoint": str(checkpoint)}

    model.save_pretrained(str(out))
    lora_config = model.peft_config["default"]
    assert isinstance(lora_config, LoraConfig)  # made above, or the parent's: an adapter this module trained
    targets = lora_config.target_modules
    record = {
        "base_model": str(base_model),
        "parent_adapter": str(parent_adapter) if parent_adapter else None,
        "snapshot_id": snapshot_id,
        "examples": len(examples),
        "config": config.model_dump(),
        "final_loss": smoothed,
        "train_seconds": round(time.time() - started, 2),
        "device": str(device),
        "target_modules": sorted(targets) if isinstance(targets, set) else targets,
    }
    (out / TRAINING_RECORD).write_text(json.dumps(record, indent=2))
    shutil.rmtree(checkpoint, ignore_errors=True)
    return record


def _checkpoint(path: Path, model, optimizer, rng: random.Random, step: int, smoothed: float | None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp / "adapter"))
    torch.save({"step": step, "loss": smoothed, "optimizer": optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(), "rng": rng.getstate()}, tmp / "state.pt")
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)  # a crash mid-write leaves the previous checkpoint whole


def _resume(path: Path, model, optimizer, rng: random.Random) -> tuple[int, float | None]:
    state = torch.load(path / "state.pt", weights_only=False)
    weights = load_file(str(path / "adapter" / "adapter_model.safetensors"))
    set_peft_model_state_dict(model, weights)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    rng.setstate(state["rng"])
    return state["step"], state["loss"]


def adapter_weights(model) -> dict[str, torch.Tensor]:
    """The adapter's own tensors (what a LoRA step should change)."""
    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
