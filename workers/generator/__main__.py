"""Run a generator worker.

    python -m workers.generator                       # base model from the settings (builtin by default)
    LOOP_MODEL_DIR=/models/my-llm python -m workers.generator --max-lag 2000
"""

from __future__ import annotations

import argparse
import logging

from services.settings import get_settings
from tasks.registry import policy_family_options
from services.store.db import open_store
from services.store.queries import sample_ids_among
from workers.generator.engine import GenerationEngine
from workers.generator.worker import CHUNK_SIZE, GeneratorWorker
from workers.model.resolve import base_model_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.generator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-lag", type=int, default=4000, help="hold back while the verifiers are this far behind")
    parser.add_argument("--chunk-size", type=int, default=CHUNK_SIZE, help="problems generated per batch")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--policy", default=None, help="the loop's policy file, for its family's options (default: the one loopctl up wrote "
                        "in the data directory)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    settings = get_settings()
    store = open_store(settings)
    engine = GenerationEngine(base_model_dir(settings), device=args.device)
    worker = GeneratorWorker(settings, engine=engine, known_samples=lambda ids: sample_ids_among(store, ids),
                             chunk_size=args.chunk_size, max_lag=args.max_lag,
                             family_options=policy_family_options(args.policy or settings.policy_file))
    worker.install_signal_handlers()
    logging.getLogger(__name__).info("generator ready on %s (model %s)", engine.device, engine.model_dir)
    worker.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
