"""One settings object for every service and worker, read from the environment.

Every variable is prefixed with ``LOOP_`` (``LOOP_DATA_DIR``, ``LOOP_KAFKA_BOOTSTRAP``,
``LOOP_DATABASE_URL``, ``LOOP_CELERY_BROKER_URL``, ...). Unset URLs fall back to the
embedded default: everything lives in files under the data directory, and the only
server is the Kafka broker the project starts itself.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOOP_", extra="ignore")

    data_dir: Path = Field(
        default=Path("data"),
        description="Where the embedded default keeps its files: SQLite databases, Kafka logs, models, indexes.",
    )
    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092",
        description="Kafka bootstrap servers, comma separated host:port pairs.",
    )
    kafka_nodes: int = Field(
        default=1, ge=1, le=9,
        description="Nodes of the Kafka cluster that `loopctl up` and `loopctl kafka start` run (3: a KRaft cluster on "
        "consecutive ports from the bootstrap's first, every topic on three replicas, two of them in sync).",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the dataset store; default: SQLite file store.sqlite in the data directory.",
    )
    celery_broker_url: str | None = Field(
        default=None,
        description="Celery broker; default: the SQLAlchemy transport over celery-broker.sqlite in the data directory.",
    )
    model_dir: Path | None = Field(
        default=None,
        description="A local Hugging Face causal-LM directory; default: the builtin model, trained on first start.",
    )
    topic_prefix: str = Field(
        default="",
        description="Prepended to every topic and consumer group name, so that several loops (or tests) share one cluster.",
    )
    max_message_bytes: int = Field(
        default=256 * 1024,
        gt=0,
        description="Messages larger than this are not decoded but sent to the dead-letter topic.",
    )
    dlq_raw_bytes: int = Field(
        default=4096,
        gt=0,
        description="How many bytes of an unreadable message the dead letter keeps.",
    )
    api_token: str | None = Field(
        default=None,
        description="Bearer token that mutating API endpoints require; mutating endpoints refuse all calls when unset.",
    )

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_has_ports(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"kafka_bootstrap entry {server!r} is not host:port")
        return value

    @field_validator("api_token")
    @classmethod
    def _token_is_not_trivial(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 16:
            raise ValueError("api_token must be at least 16 characters; generate one with `openssl rand -hex 24`")
        return value

    @model_validator(mode="after")
    def _resolve_data_dir(self) -> "Settings":
        self.data_dir = self.data_dir.expanduser().resolve()
        return self

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'store.sqlite'}"

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or f"sqla+sqlite:///{self.data_dir / 'celery-broker.sqlite'}"

    @property
    def builtin_model_dir(self) -> Path:
        return self.data_dir / "models" / "builtin"

    @property
    def policy_file(self) -> Path:
        """Where ``loopctl up`` writes the loop's policy: the family and options a job falls back to."""
        return self.data_dir / "loop" / "policy.json"

    @property
    def adapters_dir(self) -> Path:
        return self.data_dir / "adapters"

    def topic(self, name: str) -> str:
        """The full topic name for one of the design's topics (``loop.candidates`` ...)."""
        return f"{self.topic_prefix}{name}"

    def group(self, name: str) -> str:
        """The full consumer group name: loops sharing a cluster must not share groups either."""
        return f"{self.topic_prefix}{name}"


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, validated once at first use."""
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings
