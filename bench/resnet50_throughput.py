"""ResNet-50 training throughput on synthetic data (images/s).

    python -m bench.resnet50_throughput --batch_size=32 --dtype=float32
    python -m bench.resnet50_throughput --batch_size=256 --dtype=bfloat16 --jit_compile

Random tensors generated on the device (`--data=synthetic`), LARS + LEGW,
the trainer's compiled loop. The first `--warmup_steps` steps (tracing,
compilation) are left out: each "epoch" is `--steps` steps, the first one is
the warm-up, and images/s is measured over the following `--repeats`.
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from models import resnet50  # noqa: E402


def measure(batch_size, dtype, jit_compile, steps, repeats, image_size):
    with tempfile.TemporaryDirectory() as model_dir:
        results = resnet50.run(
            batch_size=batch_size, data="synthetic", dtype=dtype,
            jit_compile=jit_compile, image_size=image_size,
            num_train_examples=batch_size * steps, epochs=repeats + 1,
            base_warmup_epochs=0.0, steps_per_loop=steps,
            num_eval_examples=batch_size, eval_batch_size=batch_size,
            model_dir=model_dir, verbose=0)
    first, last = results["history"][0], results["history"][-1]
    return ((last["step"] - first["step"]) * batch_size
            / (last["train_seconds"] - first["train_seconds"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--dtype", default="float32",
                        choices=resnet50.DTYPES)
    parser.add_argument("--jit_compile", action="store_true")
    parser.add_argument("--steps", type=int, default=5,
                        help="steps per timed repeat (and in the warm-up)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--image_size", type=int, default=224)
    args = parser.parse_args()
    rate = measure(args.batch_size, args.dtype, args.jit_compile, args.steps,
                   args.repeats, args.image_size)
    print(f"resnet50 batch {args.batch_size} {args.dtype} "
          f"xla={args.jit_compile} image {args.image_size}: "
          f"{rate:.1f} images/s")


if __name__ == "__main__":
    main()
