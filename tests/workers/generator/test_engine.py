import pytest
import torch

from workers.generator import GenerationEngine, SamplingSpec
from workers.model.arithmetic_format import format_prompt
from workers.trainer import LoraTrainingConfig, train_lora

PROMPTS = [format_prompt(12, 34), format_prompt(5, 678), format_prompt(90, 9)]


def test_k_answers_per_prompt_greedy_first(tiny_model_dir):
    engine = GenerationEngine(tiny_model_dir, device="cpu")
    spec = SamplingSpec(k=3, temperature=1.0, max_new_tokens=6)
    answers = engine.generate(PROMPTS, spec)
    assert [len(a) for a in answers] == [3, 3, 3]
    again = engine.generate(PROMPTS, spec)
    assert [a[0] for a in answers] == [a[0] for a in again]  # the greedy answer is deterministic
    greedy_only = engine.generate(PROMPTS, SamplingSpec(k=1, max_new_tokens=6))
    assert [a[0] for a in greedy_only] == [a[0] for a in answers]


def test_k_answers_are_shared_among_a_problems_renderings(tiny_model_dir):
    engine = GenerationEngine(tiny_model_dir, device="cpu")
    spec = SamplingSpec(k=5, temperature=1.0, max_new_tokens=6)
    swapped = [format_prompt(34, 12), format_prompt(678, 5), format_prompt(9, 90)]
    answers = engine.generate_renderings([[p, q] for p, q in zip(PROMPTS, swapped)], spec)
    assert [len(a) for a in answers] == [5, 5, 5]
    greedy = engine.generate(PROMPTS, SamplingSpec(k=1, max_new_tokens=6))
    greedy_swapped = engine.generate(swapped, SamplingSpec(k=1, max_new_tokens=6))
    assert [a[0] for a in answers] == [g[0] for g in greedy]  # 3 answers of the first rendering, greedy first
    assert [a[3] for a in answers] == [g[0] for g in greedy_swapped]  # then 2 of the second, greedy first
    with pytest.raises(ValueError, match="same number of renderings"):
        engine.generate_renderings([[PROMPTS[0]], PROMPTS[:2]], spec)


def test_adapters_swap_in_place_without_reloading_the_base(tiny_model_dir, addition_examples, tmp_path):
    config = LoraTrainingConfig(rank=4, alpha=8, steps=6, batch_size=8, lr=5e-2, warmup_steps=0)
    for name, seed in (("a1", 1), ("a2", 2)):
        train_lora(base_model=tiny_model_dir, examples=addition_examples, out_dir=tmp_path / name,
                   config=config.model_copy(update={"seed": seed}))
    engine = GenerationEngine(tiny_model_dir, device="cpu")
    base_weight = engine.base.get_input_embeddings().weight
    pointer = base_weight.data_ptr()
    spec = SamplingSpec(k=1, max_new_tokens=8)
    plain = engine.generate(PROMPTS, spec)

    engine.use_adapter("a1", tmp_path / "a1")
    first = engine.generate(PROMPTS, spec)
    engine.use_adapter("a2", tmp_path / "a2")
    assert engine.adapter_id == "a2"
    assert list(engine.model.peft_config) == ["a2"]  # the old adapter is unloaded, not piled up
    assert engine.base.get_input_embeddings().weight.data_ptr() == pointer
    second = engine.generate(PROMPTS, spec)
    assert first != plain or second != plain

    engine.use_adapter(None)
    assert engine.generate(PROMPTS, spec) == plain
    assert torch.equal(engine.base.get_input_embeddings().weight, base_weight)
