"""Which base model the loop uses: a local Hugging Face directory from the settings, or the builtin one."""

from __future__ import annotations

import fcntl
from collections.abc import Callable
from pathlib import Path

from services.settings import Settings


def base_model_dir(settings: Settings, *, train_if_missing: bool = True) -> Path:
    """The configured model directory, or the builtin model (trained and cached on first use)."""
    if settings.model_dir is not None:
        if not (settings.model_dir / "config.json").exists():
            raise FileNotFoundError(f"LOOP_MODEL_DIR {settings.model_dir} is not a Hugging Face model directory")
        return settings.model_dir
    target = settings.builtin_model_dir
    if (target / "config.json").exists():
        return target
    if not train_if_missing:
        raise FileNotFoundError(f"the builtin model is not trained yet at {target}; run `loopctl model bootstrap`")
    return ensure_builtin(target)


def ensure_builtin(target: Path) -> Path:
    """Train the builtin model into ``target`` unless it is already there (the recipe: docs/recipe.md)."""
    from workers.model.builtin import BuiltinConfig, bootstrap

    return train_once(target, lambda out: bootstrap(BuiltinConfig(), out),
                      lambda report: f"builtin model: trained in {report['train_minutes']} min, "
                                     f"held-out accuracy {report['accuracy']}")


def train_once(target: Path, train: Callable[[Path], dict], describe: Callable[[dict], str]) -> Path:
    """``target`` if a model is already saved there, else ``train(partial_dir)`` renamed to it once complete.

    Processes that ask at once (a generator and a job worker starting on a fresh volume) train it once: the first
    holds a lock beside ``target`` while it trains, and the others wait for it and then find the model."""
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when this process dies
        if (target / "config.json").exists():
            return target  # trained by another process while this one waited
        partial = target.with_name(target.name + ".partial")
        report = train(partial)
        partial.rename(target)  # a crash mid-training leaves no half-trained model behind the cache's name
    print(describe(report))
    return target
