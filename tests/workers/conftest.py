import random

import pytest

from tasks.arithmetic_format import format_example
from workers.model.builtin import BuiltinConfig, build_model
from workers.model.tokenizer import build_tokenizer, save_tokenizer


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """An untrained two-layer builtin model saved as an ordinary Hugging Face directory."""
    import torch

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny-model")
    tokenizer = build_tokenizer()
    model = build_model(BuiltinConfig(layers=2, hidden=32, heads=2, intermediate=64), tokenizer)
    model.save_pretrained(directory)
    save_tokenizer(tokenizer, directory)
    return directory


@pytest.fixture
def addition_examples():
    rng = random.Random(0)
    return [format_example(rng.randrange(100), rng.randrange(100)) for _ in range(64)]
