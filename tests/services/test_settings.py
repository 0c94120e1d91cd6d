import pytest
from pydantic import ValidationError

from services.settings import Settings


def test_defaults_are_the_embedded_stack(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOP_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.store_url == f"sqlite:///{tmp_path / 'store.sqlite'}"
    assert settings.broker_url.startswith("sqla+sqlite:///")
    assert settings.topic("loop.candidates") == "loop.candidates"


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("LOOP_KAFKA_BOOTSTRAP", "kafka:9092,kafka2:9092")
    monkeypatch.setenv("LOOP_DATABASE_URL", "postgresql+psycopg://u:p@db/loop")
    monkeypatch.setenv("LOOP_TOPIC_PREFIX", "dev.")
    settings = Settings()
    assert settings.store_url == "postgresql+psycopg://u:p@db/loop"
    assert settings.topic("loop.dlq") == "dev.loop.dlq"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LOOP_KAFKA_BOOTSTRAP", "localhost", "not host:port"),
        ("LOOP_API_TOKEN", "short", "at least 16 characters"),
        ("LOOP_MAX_MESSAGE_BYTES", "0", "greater than 0"),
    ],
)
def test_unsafe_or_malformed_settings_are_refused(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=message):
        Settings()
