"""Any local Hugging Face causal LM through the same code path as the builtin model: generation (pad token, chat
template, end of sequence), LoRA training (target modules for the architecture, completion-only loss) and an adapter
that plain peft loads in a fresh process."""

from __future__ import annotations

import json

import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM

from tasks import Example
from workers.generator import GenerationEngine, SamplingSpec
from workers.model.hf import load_tokenizer, lora_targets, render
from workers.trainer import LoraTrainingConfig, train_lora
from workers.trainer.lora import adapter_weights




def test_the_tokenizer_gets_a_pad_token_and_the_prompt_its_chat_template(own_model_dir):
    tokenizer = load_tokenizer(own_model_dir, padding_side="left")
    assert tokenizer.pad_token_id is not None and tokenizer.padding_side == "left"
    chat = render(tokenizer, "Spell abc backwards:", chat=True)
    if own_model_dir.name.startswith("qwen2"):
        assert chat == "<|im_start|>user\nSpell abc backwards:<|im_end|>\n<|im_start|>assistant\n"
    else:  # no chat template: the text as it is
        assert chat == "Spell abc backwards:"
    assert render(tokenizer, "plain", chat=False) == "plain"


def test_generation_batches_prompts_of_different_lengths_and_stops(own_model_dir):
    engine = GenerationEngine(own_model_dir, device="cpu", batch_size=4)
    prompts = engine.render(["Spell ab backwards:", "Spell abcdefgh backwards: please", "What is 12 + 30?"], chat=True)
    answers = engine.generate(prompts, SamplingSpec(k=2, temperature=1.0, max_new_tokens=6))
    assert [len(a) for a in answers] == [2, 2, 2] and all(isinstance(t, str) for a in answers for t in a)
    # A prompt the random model answers with some text, and a character of that text: generation must end there.
    candidates = [f"Spell {w} backwards:" for w in ("ab", "abc", "de", "xyz", "What")] + prompts
    free, prompt = next((text, p) for p, (text,) in zip(candidates, engine.generate(
        candidates, SamplingSpec(k=1, max_new_tokens=12)), strict=True) if text.strip())
    stop = free.strip()[:1]
    stopped = engine.generate([prompt], SamplingSpec(k=1, max_new_tokens=12, stop=(stop,)))[0][0]
    assert stop and stopped.endswith(stop) and free.startswith(stopped) and len(stopped) <= len(free)


def test_lora_targets_what_the_architecture_has(own_model_dir):
    model = AutoModelForCausalLM.from_pretrained(own_model_dir)
    targets = lora_targets(model, LoraTrainingConfig().target_modules)
    if own_model_dir.name.startswith("gpt2"):
        assert targets == "all-linear"  # none of the Llama projections: every layer, its Conv1D ones included
        assert lora_targets(model, ["c_attn", "q_proj"]) == ["c_attn"]  # a Conv1D layer asked for by name
    else:
        assert targets == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_a_lora_adapter_trains_on_chat_prompts_and_loads_with_plain_peft(own_model_dir, tmp_path):
    examples = [Example(f"Spell {w} backwards:", f" {w[::-1]}") for w in ("abc", "bcd", "cde", "def")]
    base_before = {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(own_model_dir).state_dict().items()}
    config = LoraTrainingConfig(steps=8, batch_size=4, rank=4, alpha=8, warmup_steps=0, replay_share=0.0,
                                device="cpu", lr=1e-2)
    record = train_lora(base_model=own_model_dir, examples=examples, out_dir=tmp_path / "adapter", config=config,
                        chat=True, replay=lambda rng, n: [])
    assert record["final_loss"] > 0 and record["target_modules"]
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == str(own_model_dir)
    # A fresh process, plain peft: the adapter loads on its base, changes its output, and the base is untouched.
    script = (
        "import sys, torch; from transformers import AutoModelForCausalLM; from peft import PeftModel\n"
        "base = AutoModelForCausalLM.from_pretrained(sys.argv[1]); ids = torch.tensor([[1, 2, 3, 4]])\n"
        "before = base(ids).logits.clone()\n"
        "model = PeftModel.from_pretrained(base, sys.argv[2]).eval()\n"
        "print(float((model(ids).logits - before).abs().max()))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(own_model_dir), str(tmp_path / "adapter")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip().splitlines()[-1]) > 0  # the trained adapter moved the logits
    after = AutoModelForCausalLM.from_pretrained(own_model_dir).state_dict()
    assert all(torch.equal(base_before[k], after[k]) for k in base_before)


def test_training_changes_the_adapter_and_masks_the_prompt(own_model_dir):
    from peft import LoraConfig, get_peft_model

    from workers.model.builtin import encode_examples

    tokenizer = load_tokenizer(own_model_dir, padding_side="right")
    batch = encode_examples(tokenizer, [Example(render(tokenizer, "Spell abc backwards:", True), " cba")])
    prompt_tokens = len(tokenizer(render(tokenizer, "Spell abc backwards:", True))["input_ids"])
    assert (batch["labels"][0, :prompt_tokens] == -100).all() and (batch["labels"][0, prompt_tokens:] != -100).any()
    base = AutoModelForCausalLM.from_pretrained(own_model_dir)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=lora_targets(base, None),
                                            task_type="CAUSAL_LM"))
    before = adapter_weights(model)
    frozen = {k: v.clone() for k, v in model.named_parameters() if not v.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = adapter_weights(model)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(frozen[k], v) for k, v in model.named_parameters() if not v.requires_grad)



def test_gradient_checkpointing_and_bfloat16_autocast_train_the_same_adapter_shape(own_model_dir, tmp_path):
    examples = [Example(f"Spell {w} backwards:", f" {w[::-1]}") for w in ("abc", "bcd")]
    plain = LoraTrainingConfig(steps=2, batch_size=2, rank=4, alpha=8, warmup_steps=0, replay_share=0.0, device="cpu")
    lean = plain.model_copy(update={"gradient_checkpointing": True, "dtype": "bfloat16"})
    for name, config in (("plain", plain), ("lean", lean)):
        record = train_lora(base_model=own_model_dir, examples=examples, out_dir=tmp_path / name, config=config,
                            chat=True, replay=lambda rng, n: [])
        assert record["final_loss"] > 0 and record["config"]["dtype"] == config.dtype
    from safetensors.torch import load_file

    plain_w, lean_w = load_file(tmp_path / "plain" / "adapter_model.safetensors"), load_file(
        tmp_path / "lean" / "adapter_model.safetensors")
    assert plain_w.keys() == lean_w.keys() and all(plain_w[k].shape == lean_w[k].shape for k in plain_w)
