"""Which base model the loop uses: a local Hugging Face directory from the settings, or the builtin one."""

from __future__ import annotations

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
    from workers.model.builtin import ensure_builtin

    return ensure_builtin(target)
