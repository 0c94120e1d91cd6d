"""The base model is trained once, however many processes ask for it at the same time."""

from __future__ import annotations

import threading
import time

from workers.model.resolve import train_once


def test_callers_that_ask_at_once_train_the_model_once(tmp_path):
    target, trainings, results = tmp_path / "models" / "builtin", [], []

    def train(out):
        trainings.append(out)
        time.sleep(0.5)  # long enough for the other callers to arrive while it trains
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        return {"minutes": 0.01}

    callers = [threading.Thread(target=lambda: results.append(train_once(target, train, str))) for _ in range(3)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=30)
    assert len(trainings) == 1 and results == [target] * 3
    assert (target / "config.json").exists() and not target.with_name("builtin.partial").exists()
