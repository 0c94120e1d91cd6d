"""Fixtures shared by the whole test tree: the real servers some tests need, and settings that point at them.

Tests say what they need with markers (``@pytest.mark.kafka`` ...); a marked test gets its server automatically.
Each server is started once per session, on free ports in a temporary directory, or taken from the environment:

    LOOP_TEST_KAFKA_BOOTSTRAP=host:port   use that Kafka instead of starting one
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from uuid import uuid4

import pytest

from services.settings import Settings

# -- Kafka ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExternalKafka:
    """A broker this session did not start (``LOOP_TEST_KAFKA_BOOTSTRAP``)."""

    bootstrap: str


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """One Kafka broker for the whole session: a ``KafkaBroker`` on free ports, or the external one."""
    external = os.environ.get("LOOP_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield ExternalKafka(external)
        return
    from services.kafka.launcher import KafkaBroker

    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(autouse=True)
def _kafka_for_marked_tests(request):
    if request.node.get_closest_marker("kafka"):
        request.getfixturevalue("kafka_broker")


# -- Settings ------------------------------------------------------------------------------------------------


@pytest.fixture
def settings(kafka_broker, tmp_path) -> Settings:
    """Settings for one test: its own data directory, and a topic prefix no other test shares."""
    return Settings(data_dir=tmp_path, kafka_bootstrap=kafka_broker.bootstrap, topic_prefix=f"t{uuid4().hex[:8]}.")


# -- models of other architectures ---------------------------------------------------------------------------

CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def own_model(directory, architecture: str):
    """A small ``architecture`` model ("gpt2" or "qwen2") from its config, with a byte-level BPE tokenizer trained
    here with ``tokenizers`` and saved with ``save_pretrained``: the kind of directory a user brings (no pretrained
    weights can be downloaded on these machines). GPT-2's has no pad token, as GPT-2's own; Qwen2's has a ChatML
    chat template, its end-of-sequence token ``<|im_end|>``."""
    import string

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    specials = ["<|endoftext|>"] + (["<|im_start|>", "<|im_end|>"] if architecture == "qwen2" else [])
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    words = ["".join(p) for p in zip(string.ascii_lowercase, string.ascii_lowercase[3:])]
    corpus = [f"Spell {w} backwards: {w[::-1]}" for w in words] + ["What is 12 + 30? Answer: 42", "user assistant"]
    core.train_from_iterator(corpus * 20, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if architecture == "gpt2":
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=64, n_layer=2, n_head=2,
                                           bos_token_id=0, eos_token_id=0))
    else:
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>")
        tokenizer.chat_template = CHATML
        model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                             max_position_embeddings=128, eos_token_id=tokenizer.eos_token_id,
                                             pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session", params=["gpt2", "qwen2"])
def own_model_dir(request, tmp_path_factory):
    """A user's model directory of another architecture than the builtin Llama: GPT-2, then Qwen2."""
    return own_model(tmp_path_factory.mktemp(request.param), request.param)
