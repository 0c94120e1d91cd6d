"""The layers go one way down, schemas < tasks < services < workers < loop: import-linter's contract in
pyproject.toml, checked on the whole tree (imports inside functions count too)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_contract_lists_the_layers_top_down():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = config["contracts"]
    assert contract["type"] == "layers" and contract["layers"] == ["loop", "workers", "services", "tasks", "schemas"]


def test_no_import_goes_up_a_layer():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    result = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Contracts: 1 kept, 0 broken." in result.stdout


def test_an_import_up_a_layer_breaks_the_contract(tmp_path):
    # The same contract on a copy of two layers in which the lower one imports the upper one.
    for package, body in (("schemas", "import tasks\n"), ("tasks", "")):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(body)
    (tmp_path / ".importlinter").write_text("[importlinter]\nroot_packages =\n    schemas\n    tasks\n\n"
                                            "[importlinter:contract:layers]\nname = layers\ntype = layers\n"
                                            "layers =\n    tasks\n    schemas\n")
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    result = subprocess.run([lint, "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1 and "schemas -> tasks" in result.stdout
