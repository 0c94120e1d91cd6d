"""Run a verifier worker.

    python -m workers.verifier
    python -m workers.verifier --agreement 1.0 --oracle     # oracle: the true answer decides (measurement only)
"""

from __future__ import annotations

import argparse
import logging

from services.settings import get_settings
from tasks.registry import policy_family_options
from services.store.db import open_store
from services.store.queries import sample_ids_among
from workers.verifier.worker import VerifierWorker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.verifier", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agreement", type=float, default=1.0, help="self-consistency threshold")
    parser.add_argument("--oracle", action="store_true", help="accept by the true answer (not label-free)")
    parser.add_argument("--majority-only", action="store_true",
                        help="grounded families: judge only the majority answer, not the one the evidence supports")
    parser.add_argument("--model-abstentions-only", action="store_true",
                        help="grounded families: accept 'I do not know' only where the model said it, instead of "
                             "labelling every question the corpus does not answer with it")
    parser.add_argument("--policy", default=None, help="the loop's policy file, for its family's options (default: the one loopctl up wrote "
                        "in the data directory)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    settings = get_settings()
    store = open_store(settings)
    worker = VerifierWorker(settings, accepted_among=lambda ids: sample_ids_among(store, ids, status="accepted"),
                            threshold=args.agreement, oracle=args.oracle, choose_supported=not args.majority_only,
                            abstain_unsupported=not args.model_abstentions_only,
                            family_options=policy_family_options(args.policy or settings.policy_file))
    worker.install_signal_handlers()
    worker.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
