"""Batched generation of k answers per prompt, with a LoRA adapter that can be swapped in place.

The base model is loaded once. ``use_adapter`` loads a PEFT adapter beside the base weights and
makes it active; the previous adapter is unloaded, so switching to a newer adapter costs the
adapter's few kilobytes, not a reload of the base model. Generation uses the KV cache of
``model.generate``; the first answer of each prompt can be greedy and the rest sampled.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, GenerationMixin

from workers.model.hf import load_tokenizer, render


def pick_device(preferred: str | None = None) -> torch.device:
    if preferred:
        return torch.device(preferred)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class SamplingSpec:
    k: int = 4
    temperature: float = 0.7
    top_p: float = 1.0
    greedy_first: bool = True
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()  # generation also ends at any of these strings (beside the end-of-sequence token)


class GenerationEngine:
    def __init__(self, model_dir: str | Path, *, device: str | None = None, batch_size: int = 256) -> None:
        self.model_dir = str(model_dir)
        self.device = pick_device(device)
        self.batch_size = batch_size
        self.tokenizer = load_tokenizer(self.model_dir, padding_side="left")  # every row continues its last token
        loaded = AutoModelForCausalLM.from_pretrained(self.model_dir)
        # transformers wraps `to` in functools.wraps, which mypy does not bind as a method (the device reads as self)
        self.base = loaded.to(self.device).eval()  # type: ignore[arg-type]
        self.model: GenerationMixin | PeftModel = self.base
        self.adapter_id: str | None = None

    # -- adapters -------------------------------------------------------------------------------------
    def use_adapter(self, adapter_id: str | None, path: str | Path | None = None) -> None:
        """Make ``adapter_id`` (loaded from ``path``) the active adapter; None returns to the base model."""
        if adapter_id == self.adapter_id:
            return
        previous = self.adapter_id
        if adapter_id is None:
            if isinstance(self.model, PeftModel):
                # Removes the LoRA layers without merging them: the base weights stay as loaded.
                self.model = self.model.unload()
            self.adapter_id = None
            return
        if path is None:
            raise ValueError(f"adapter {adapter_id!r} needs the path of its PEFT directory")
        if isinstance(self.model, PeftModel):
            self.model.load_adapter(str(path), adapter_name=adapter_id, is_trainable=False)
            self.model.set_adapter(adapter_id)
            if previous is not None:
                self.model.delete_adapter(previous)
        else:
            self.model = PeftModel.from_pretrained(self.base, str(path), adapter_name=adapter_id, is_trainable=False)
        self.model.to(self.device).eval()
        self.adapter_id = adapter_id

    # -- generation -----------------------------------------------------------------------------------
    def render(self, texts: list[str], chat: bool) -> list[str]:
        """A family's prompts as this model reads them (its chat template around them where ``chat``)."""
        return [render(self.tokenizer, text, chat) for text in texts]

    @torch.no_grad()
    def generate(self, prompts: list[str], spec: SamplingSpec) -> list[list[str]]:
        """``spec.k`` completions per prompt, in prompt order."""
        answers: list[list[str]] = [[] for _ in prompts]
        greedy = 1 if spec.greedy_first else 0
        sampled = spec.k - greedy
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            if greedy:
                for i, texts in enumerate(self._run(chunk, 1, None, spec)):
                    answers[start + i].extend(texts)
            if sampled:
                for i, texts in enumerate(self._run(chunk, sampled, spec.temperature, spec)):
                    answers[start + i].extend(texts)
        return answers

    def generate_renderings(self, renderings: list[list[str]], spec: SamplingSpec) -> list[list[str]]:
        """``spec.k`` completions per problem, shared among its renderings (each problem's list of prompts, all of
        one length R): k // R each, the remainder to the first; each rendering's first answer greedy if asked."""
        if not renderings:
            return []
        count = len(renderings[0])
        if any(len(r) != count for r in renderings):
            raise ValueError("every problem needs the same number of renderings")
        if count > spec.k:
            raise ValueError(f"{count} renderings cannot share {spec.k} answers")
        answers: list[list[str]] = [[] for _ in renderings]
        for index in range(count):
            share = spec.k // count + (spec.k % count if index == 0 else 0)
            generated = self.generate([r[index] for r in renderings], replace(spec, k=share))
            for mine, texts in zip(answers, generated, strict=True):
                mine.extend(texts)
        return answers

    @torch.no_grad()
    def generate_scored(self, prompts: list[str], max_new_tokens: int) -> list[tuple[str, float]]:
        """One greedy completion per prompt with the probability the model gave it: the product of each generated
        token's probability, up to and including the end of sequence (the whole completion where it has none)."""
        scored: list[tuple[str, float]] = []
        eos = self.tokenizer.eos_token_id
        for start in range(0, len(prompts), self.batch_size):
            batch = self.tokenizer(prompts[start : start + self.batch_size], return_tensors="pt",
                                   padding=True).to(self.device)
            out = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                                      pad_token_id=self.tokenizer.pad_token_id, eos_token_id=eos,
                                      output_logits=True, return_dict_in_generate=True)
            new = out.sequences[:, batch["input_ids"].shape[1] :]
            logprobs = torch.stack(out.logits, dim=1).float().log_softmax(-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
            # A row that ended keeps being padded: only its tokens up to the first end of sequence count.
            ended_before = (new == eos).long().cumsum(dim=1) - (new == eos).long()
            totals = (logprobs * (ended_before == 0)).sum(dim=1).exp()
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            scored += [(text, float(p)) for text, p in zip(texts, totals.tolist(), strict=True)]
        return scored

    def _run(self, prompts: list[str], n: int, temperature: float | None, spec: SamplingSpec) -> list[list[str]]:
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.device)
        if temperature:
            sampling = {"do_sample": True, "temperature": temperature, "top_p": spec.top_p, "top_k": 0}
        else:
            sampling = {"do_sample": False}
        ids = self.model.generate(
            **batch,
            max_new_tokens=spec.max_new_tokens,
            num_return_sequences=n,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            use_cache=True,
            **({"stop_strings": list(spec.stop), "tokenizer": self.tokenizer} if spec.stop else {}),
            **sampling,
        )
        texts = self.tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        return [texts[i : i + n] for i in range(0, len(texts), n)]
