"""Training throughput of the builtin model on one thread, two threads, and two one-thread processes side by side.

    python bench/train_threads.py            # 35 timed steps each, after 5 warm-up steps

It answers whether, on a small CPU machine, giving one core to generation while the other trains can pay:
if two threads train nearly twice as fast as one, it cannot. Ends with one line:
    threads: 1 thread <a> s/step, 2 threads <b> s/step (<a/b>x), two 1-thread processes <c> and <d> s/step
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def measure(threads: int, steps: int) -> float:
    import torch

    from workers.model.builtin import BuiltinConfig, build_model, easy_examples, encode_examples, training_step
    from workers.model.tokenizer import build_tokenizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = BuiltinConfig()
    tokenizer = build_tokenizer()
    model = build_model(config, tokenizer)
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr)
    rng = random.Random(0)
    batches = [encode_examples(tokenizer, easy_examples(config, rng, config.batch_size)) for _ in range(steps + 5)]
    for batch in batches[:5]:
        training_step(model, optimizer, params, batch, config.lr)
    started = time.perf_counter()
    for batch in batches[5:]:
        training_step(model, optimizer, params, batch, config.lr)
    return (time.perf_counter() - started) / steps


def in_subprocess(threads: int, steps: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--one", str(threads), "--steps", str(steps)],
                            stdout=subprocess.PIPE, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=35)
    parser.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(f"{measure(args.one, args.steps):.4f}")
        return
    print("command: python bench/train_threads.py " + " ".join(sys.argv[1:]))
    one = float(in_subprocess(1, args.steps).communicate()[0])
    two = float(in_subprocess(2, args.steps).communicate()[0])
    pair = [in_subprocess(1, args.steps) for _ in range(2)]
    side = [float(p.communicate()[0]) for p in pair]
    print(f"threads: 1 thread {one:.3f} s/step, 2 threads {two:.3f} s/step ({one / two:.2f}x), "
          f"two 1-thread processes {side[0]:.3f} and {side[1]:.3f} s/step")


if __name__ == "__main__":
    main()
