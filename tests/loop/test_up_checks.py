"""`loopctl up` refuses a task family it cannot build before anything starts, and says why; `loopctl tasks` lists
what is available and where each comes from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def loopctl(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loop.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "LOOP_DATA_DIR": str(data_dir), **env})


@pytest.mark.parametrize(("family", "reason"), [
    ("no_such_package.tasks:Thing", "cannot load no_such_package.tasks:Thing: ModuleNotFoundError"),
    ("json:dumps", "json:dumps is <function dumps"),
    ("sums", "unknown task family 'sums'; known: arithmetic, grounded, jsonl"),
])
def test_up_stops_before_anything_starts_on_a_family_it_cannot_build(tmp_path, family, reason):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"family": family}))
    result = loopctl("up", "--policy", str(policy), "--minutes", "1", data_dir=tmp_path)
    assert result.returncode == 2 and "loopctl: cannot run the policy's task family" in result.stderr
    assert reason in result.stderr
    assert not (tmp_path / "kafka").exists() and not (tmp_path / "models").exists()  # no broker, no bootstrap


def test_a_checker_that_cannot_load_stops_up_and_tasks_lists_the_families(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"question": "a?"}\n{"question": \n')
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"family": "jsonl", "family_options": {"path": str(tmp_path / "p.jsonl"),
                                                                        "checker": "no_module_here:f"}}))
    result = loopctl("up", "--policy", str(policy), data_dir=tmp_path)
    assert result.returncode == 2 and "cannot load the checker no_module_here:f" in result.stderr
    listed = loopctl("tasks", data_dir=tmp_path)
    assert listed.returncode == 0
    assert "arithmetic  builtin (tasks.arithmetic)" in listed.stdout and "jsonl       builtin (tasks.data)" in listed.stdout


def test_the_embedded_default_generates_its_api_token_once_and_keeps_it_private(tmp_path):
    from loop.up import embedded_token
    from services.settings import Settings

    token = embedded_token(tmp_path)
    assert (tmp_path / "api-token").stat().st_mode & 0o777 == 0o600
    assert embedded_token(tmp_path) == token  # a restarted loop keeps the token a browser holds
    assert Settings(api_token=token).api_token == token  # long enough for the API to accept it
    (tmp_path / "other").mkdir()
    assert embedded_token(tmp_path / "other") != token  # another loop, another token


@pytest.mark.kafka
def test_init_creates_the_topics_and_tables_and_resolves_the_model(settings, tiny_trained_model):
    from sqlalchemy import inspect

    from schemas.tables import Adapter, Sample
    from services.bus.topics import topic_names
    from services.store.db import make_engine
    from tests.loop.conftest import service_env

    def init(model_dir: Path) -> subprocess.CompletedProcess:
        env = service_env(settings.model_copy(update={"model_dir": model_dir}))
        return subprocess.run([sys.executable, "-m", "loop.cli", "init"], cwd=REPO, capture_output=True, text=True,
                              timeout=120, env=env)

    first = init(tiny_trained_model)
    assert first.returncode == 0, first.stderr
    assert f"topics: {len(topic_names(settings))} created" in first.stdout
    assert f"model: {tiny_trained_model}" in first.stdout
    tables = set(inspect(make_engine(settings.store_url)).get_table_names())
    assert {Sample.__tablename__, Adapter.__tablename__} <= tables
    again = init(tiny_trained_model)  # the init service of a stack brought down and up again
    assert again.returncode == 0 and "topics: 0 created" in again.stdout, again.stderr
    failed = init(settings.data_dir / "nowhere")  # a model path that is not a model: the stack does not start
    assert failed.returncode != 0 and "is not a Hugging Face model directory" in failed.stderr
