"""LoRA training throughput of the builtin model (the loop's adapter steps: the recipe's rank, targets and batch of
128) on one thread, two threads, and two one-thread processes side by side;
then two threads beside a one-thread process at idle priority (``SCHED_IDLE``).

    python bench/train_threads.py            # 35 timed steps each, after 5 warm-up steps

It answers whether, on a small CPU machine, giving one core to generation while the other trains can pay:
if two threads train nearly twice as fast as one, it cannot. The last case asks whether other work can use only
what a two-thread training step leaves idle (its threads wait for each other): what the idle-priority process
gets done, and what it costs the training. Ends with one line:
    threads: 1 thread <a> s/step, 2 threads <b> s/step (<a/b>x), two 1-thread processes <c> and <d> s/step,
    2 threads beside an idle-priority 1-thread process <e> s/step (<e/b>x), which ran <f> s/step meanwhile
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def measure(threads: int, steps: int, *, stamps: bool = False) -> tuple[float, float, float]:
    """(seconds per step, start, end) over ``steps`` timed steps; with ``stamps``, train until killed and print the
    wall-clock time after every step instead."""
    import torch
    from peft import LoraConfig, get_peft_model

    from loop.policy import RECIPE_LORA
    from workers.model.builtin import BuiltinConfig, build_model, easy_examples, encode_examples, training_step
    from workers.model.hf import lora_targets
    from workers.model.tokenizer import build_tokenizer
    from workers.trainer.lora import LoraTrainingConfig

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config, lora = BuiltinConfig(), LoraTrainingConfig(**RECIPE_LORA)  # the loop's adapter steps, as a round takes them
    tokenizer = build_tokenizer()
    base = build_model(config, tokenizer)
    model = get_peft_model(base, LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                            target_modules=lora_targets(base, lora.target_modules), task_type="CAUSAL_LM"))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lora.lr)
    rng = random.Random(0)
    batches = [encode_examples(tokenizer, easy_examples(config, rng, lora.batch_size)) for _ in range(steps + 5)]
    for batch in batches[:5]:
        training_step(model, optimizer, params, batch, lora.lr)
    if stamps:
        for step in range(1 << 62):
            training_step(model, optimizer, params, batches[5 + step % steps], lora.lr)
            print(f"{time.time():.4f}", flush=True)
    started = time.time()
    for batch in batches[5:]:
        training_step(model, optimizer, params, batch, lora.lr)
    ended = time.time()
    return (ended - started) / steps, started, ended


def in_subprocess(threads: int, steps: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--one", str(threads), "--steps", str(steps), *extra],
                            stdout=subprocess.PIPE, text=True)


def seconds_per_step(process: subprocess.Popen) -> float:
    return float(process.communicate()[0].split()[0])


def beside_idle_process(steps: int) -> tuple[float, float]:
    """(s/step of two threads, s/step of a one-thread process at idle priority while they trained)."""
    background = in_subprocess(1, steps, "--idle", "--stamps")
    background.stdout.readline()  # its first step is done: it is warm
    per_step, started, ended = map(float, in_subprocess(2, steps).communicate()[0].split())
    background.terminate()
    rest = background.communicate()[0].split()
    done = [float(t) for t in rest if started <= float(t) <= ended]
    return per_step, (ended - started) / max(len(done), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=35)
    parser.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--idle", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stamps", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        if args.idle:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        per_step, started, ended = measure(args.one, args.steps, stamps=args.stamps)
        print(f"{per_step:.4f} {started:.4f} {ended:.4f}")
        return
    print("command: python bench/train_threads.py " + " ".join(sys.argv[1:]))
    one = seconds_per_step(in_subprocess(1, args.steps))
    two = seconds_per_step(in_subprocess(2, args.steps))
    pair = [in_subprocess(1, args.steps) for _ in range(2)]
    side = [seconds_per_step(p) for p in pair]
    beside, idle = beside_idle_process(args.steps)
    print(f"threads: 1 thread {one:.3f} s/step, 2 threads {two:.3f} s/step ({one / two:.2f}x), "
          f"two 1-thread processes {side[0]:.3f} and {side[1]:.3f} s/step, 2 threads beside an idle-priority "
          f"1-thread process {beside:.3f} s/step ({beside / two:.2f}x), which ran {idle:.3f} s/step meanwhile")


if __name__ == "__main__":
    main()
