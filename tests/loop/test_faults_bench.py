"""The faults bench in short: a few minutes of the loop on a tiny model under random kills, broker restarts and
malformed messages, then every candidate, verdict, adapter and dead letter counted. The bench's own checks decide:
it returns non-zero on a lost or doubled sample, a malformed message missing from the DLQ, a recovery past its
bound or a regressing adapter promoted."""

from __future__ import annotations

import shutil

import pytest

from bench import faults
from loop.policy import LoopPolicy
from services.kafka.launcher import _free_ports

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.mark.skipif(shutil.which("kcat") is None, reason="needs kcat (scripts/setup.sh installs it)")
def test_a_short_run_under_faults_loses_nothing_doubles_nothing_and_recovers(tmp_path, tiny_trained_model,
                                                                            monkeypatch, capsys):
    policy = tmp_path / "policy.json"
    policy.write_text(LoopPolicy(min_difficulty=2, target_difficulty=2, problems_per_round=120, request_size=20, k=2,
                                 base_eval_up_to=2, family_options={"easy_digits": 2, "scarce_digits": 0},
                                 lora={"steps": 8, "batch_size": 8, "rank": 4, "alpha": 8, "warmup_steps": 0}
                                 ).model_dump_json())
    [port] = _free_ports(1)
    monkeypatch.setenv("LOOP_KAFKA_BOOTSTRAP", f"127.0.0.1:{port}")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    code = faults.main(["--minutes", "3", "--faults", "8", "--seed", "3", "--model", str(tiny_trained_model),
                        "--policy", str(policy), "--out", str(tmp_path / "faults")])

    out = capsys.readouterr().out
    [line] = [row for row in out.splitlines() if row.startswith("faults: ")]
    assert code == 0, out[-4000:]
    assert " 0 lost, 0 doubled" in line, line
    injected = int(line.split()[1])
    assert injected >= 3, line
