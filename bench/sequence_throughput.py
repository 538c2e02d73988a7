"""Training throughput of the PTB language model and GNMT on this machine,
in tokens per second, at the base batch and the sweeps' larger ones.

    python -m bench.sequence_throughput

Each case trains `--loops` loops of about `--examples_per_loop` examples
(sequences or sentence pairs) in its own process (real data, float32, no
XLA) and reports the trainer's throughput, which leaves out the first loop
(tracing). Tokens: PTB counts the unrolled
input tokens (20 per sequence); GNMT counts source and target tokens of the
mean Multi30k pair (subwords, [END] included). The ratio is to the same
model's base batch, measured in the same run. Writes
docs/results/sequence_throughput.csv.
"""

import argparse
import os
import tempfile

from bench import sweep_runner

CASES = [("ptb_lstm", 20), ("ptb_lstm", 80), ("ptb_lstm", 320),
         ("gnmt", 128), ("gnmt", 512)]
COLUMNS = ["model", "batch_size", "tokens_per_second", "ratio_to_base"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples_per_loop", type=int, default=2560)
    parser.add_argument("--loops", type=int, default=3)
    parser.add_argument("--csv", default="docs/results/sequence_throughput.csv")
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args()
    if os.path.exists(args.csv):
        os.remove(args.csv)
    base = {}
    with tempfile.TemporaryDirectory() as tmp:
        for module, batch_size in CASES:
            steps = max(2, round(args.examples_per_loop / batch_size))
            kwargs = dict(batch_size=batch_size, config="small",
                          max_steps=args.loops * steps, steps_per_loop=steps,
                          data_dir=args.data_dir, verbose=0,
                          model_dir=os.path.join(tmp, f"{module}_{batch_size}"))
            if module == "gnmt":
                kwargs["num_test_pairs"] = 10
            else:
                kwargs["num_test_tokens"] = 2000
            rate = sweep_runner.run_in_child(module, kwargs)["tokens_per_second"]
            base.setdefault(module, rate)
            sweep_runner.append_row(args.csv, COLUMNS, dict(
                model=module, batch_size=batch_size,
                tokens_per_second=round(rate),
                ratio_to_base=round(rate / base[module], 2)))
            print(f"{module} batch {batch_size}: {rate:.0f} tokens/s "
                  f"({rate / base[module]:.2f}x the base batch)", flush=True)


if __name__ == "__main__":
    main()
