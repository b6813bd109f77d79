#!/usr/bin/env python3
"""scripts/bench-compare.py BEFORE.json AFTER.json - compares two `ftkv bench --json` runs.

Prints every figure of both runs (the slowest rank's, as `ftkv bench` reports it) and the ratio
after/before, written so that above 1 is better (for times and CPU shares, before/after). Read
the figures against the baselines of the same runs: this machine's speed moves between runs.
"""
import json
import sys


def load(path):
    with open(path) as f:
        run = json.load(f)
    return run, {fig["name"]: fig for fig in run["figures"]}


def show(x, unit):
    if x is None:
        return "-"
    if unit == "ops/s":
        return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.1f} k"
    return f"{x:.2f}"


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    (a, fa), (b, fb) = load(sys.argv[1]), load(sys.argv[2])
    for key in ("ranks", "keys", "gets", "thread_level"):
        if a.get(key) != b.get(key):
            print(f"note: the runs differ in {key}: {a.get(key)} and {b.get(key)}")
    print(f"{'figure':56} {'before':>12} {'after':>12} {'better x':>9}  unit")
    for name, fig in fa.items():
        other = fb.get(name)
        before, after = fig["slowest_rank"], other["slowest_rank"] if other else None
        ratio = "-"
        if before and after:
            ratio = f"{(after / before) if fig['higher_is_better'] else (before / after):.2f}"
        print(f"{name[:56]:56} {show(before, fig['unit']):>12} {show(after, fig['unit']):>12} {ratio:>9}  {fig['unit']}")
    for name in fb:
        if name not in fa:
            print(f"{name[:56]:56} {'-':>12} {show(fb[name]['slowest_rank'], fb[name]['unit']):>12} {'-':>9}  {fb[name]['unit']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
