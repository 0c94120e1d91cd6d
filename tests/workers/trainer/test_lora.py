import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from workers.trainer import LoraTrainingConfig, train_lora

FAST = dict(rank=4, alpha=8, steps=4, batch_size=8, warmup_steps=1, lr=1e-2, checkpoint_every=2)


def lora_tensors(directory):
    from safetensors.torch import load_file

    return load_file(str(directory / "adapter_model.safetensors"))


def test_a_lora_step_changes_the_adapter_and_not_the_base(tiny_model_dir, addition_examples, tmp_path):
    base_before = {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict().items()}
    zero_steps = LoraTrainingConfig(**{**FAST, "steps": 1, "lr": 1e-12, "warmup_steps": 0})
    train_lora(base_model=tiny_model_dir, examples=addition_examples, out_dir=tmp_path / "init", config=zero_steps)
    record = train_lora(base_model=tiny_model_dir, examples=addition_examples, out_dir=tmp_path / "a",
                        config=LoraTrainingConfig(**FAST), snapshot_id="snap-1")
    initial, trained = lora_tensors(tmp_path / "init"), lora_tensors(tmp_path / "a")
    assert initial.keys() == trained.keys()
    assert any(not torch.allclose(initial[k], trained[k]) for k in initial if "lora_B" in k)
    base_after = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert all(torch.equal(base_before[k], base_after[k]) for k in base_before)
    saved = json.loads((tmp_path / "a" / "training.json").read_text())
    assert saved["snapshot_id"] == "snap-1" and saved["config"]["rank"] == 4 and record["final_loss"] > 0


def test_the_adapter_loads_with_plain_peft_in_a_fresh_process(tiny_model_dir, addition_examples, tmp_path):
    train_lora(base_model=tiny_model_dir, examples=addition_examples, out_dir=tmp_path / "a", config=LoraTrainingConfig(**FAST))
    script = (
        "from transformers import AutoModelForCausalLM; from peft import PeftModel; "
        f"base = AutoModelForCausalLM.from_pretrained({str(tiny_model_dir)!r}); "
        f"model = PeftModel.from_pretrained(base, {str(tmp_path / 'a')!r}); "
        "print(type(model).__name__, sum(p.numel() for n, p in model.named_parameters() if 'lora_' in n))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out[0].startswith("PeftModel") and int(out[1]) > 0


def test_training_resumes_from_its_checkpoint(tiny_model_dir, addition_examples, tmp_path):
    config = LoraTrainingConfig(**FAST)
    calls = iter([False, False, False, True])
    stopped = train_lora(base_model=tiny_model_dir, examples=addition_examples, out_dir=tmp_path / "a",
                         config=config, should_stop=lambda: next(calls))
    assert stopped["stopped"] and (tmp_path / "a" / "checkpoint" / "state.pt").exists()
    seen = []
    train_lora(base_model=tiny_model_dir, examples=addition_examples, out_dir=tmp_path / "a", config=config,
               progress=lambda step, total, loss: seen.append(step))
    assert seen == [4]  # only the step left after the checkpoint at step 3
    assert not (tmp_path / "a" / "checkpoint").exists()



def test_a_resumed_adapter_is_the_adapter_training_would_have_made_uninterrupted(tiny_model_dir, addition_examples,
                                                                                tmp_path):
    config = LoraTrainingConfig(**FAST)
    train_lora(base_model=tiny_model_dir, examples=addition_examples, out_dir=tmp_path / "whole", config=config)
    calls = iter([False, False, False, True])  # stopped after the checkpoint at step 2, before step 4
    train_lora(base_model=tiny_model_dir, examples=addition_examples, out_dir=tmp_path / "cut", config=config,
               should_stop=lambda: next(calls))
    train_lora(base_model=tiny_model_dir, examples=addition_examples, out_dir=tmp_path / "cut", config=config)
    whole, resumed = lora_tensors(tmp_path / "whole"), lora_tensors(tmp_path / "cut")
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole), "same batches, same optimizer state, same weights"


def test_continue_from_the_parent_adapter(tiny_model_dir, addition_examples, tmp_path):
    train_lora(base_model=tiny_model_dir, examples=addition_examples, out_dir=tmp_path / "parent", config=LoraTrainingConfig(**FAST))
    child = LoraTrainingConfig(**{**FAST, "init": "parent"})
    train_lora(base_model=tiny_model_dir, examples=addition_examples, out_dir=tmp_path / "child", config=child,
               parent_adapter=tmp_path / "parent")
    parent, trained = lora_tensors(tmp_path / "parent"), lora_tensors(tmp_path / "child")
    assert parent.keys() == trained.keys()
    assert any(not torch.equal(parent[k], trained[k]) for k in parent)
    with pytest.raises(ValueError, match="parent adapter"):
        train_lora(base_model=tiny_model_dir, examples=addition_examples, out_dir=tmp_path / "x", config=child)


def test_an_empty_snapshot_without_replay_is_refused(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="nothing to train on"):
        train_lora(base_model=tiny_model_dir, examples=[], out_dir=tmp_path / "a", config=LoraTrainingConfig(**FAST))
