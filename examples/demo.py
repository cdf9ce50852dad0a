"""whybox demo: the same as ``whybox demo`` (see :mod:`whybox.demo`).

Trains (or loads from ``OUT/cache``) a CNN on scikit-learn's digits, an MLP on the
breast-cancer table and a sentiment head on the offline MiniLM model; explains predictions
with Integrated Gradients, Occlusion, Grad-CAM, LIME, KernelSHAP and attention rollout;
checks them; writes ``OUT/report.html`` (self-contained) and one PNG per view.

Usage: ``python examples/demo.py [--out DIR] [--quick] [--no-text]``.
"""

from __future__ import annotations

import argparse

from whybox.demo import run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/demo", help="report folder (default out/demo)")
    parser.add_argument("--quick", action="store_true", help="fewer examples and samples")
    parser.add_argument("--no-text", action="store_true", help="skip the MiniLM text part")
    args = parser.parse_args()
    run_demo(args.out, quick=args.quick, text=not args.no_text)


if __name__ == "__main__":
    main()
