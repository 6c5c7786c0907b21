"""Alternating timing of two commands: A, B, A, B, ... and the median of the per-pair ratios A/B.

On shared vCPUs the speed of the machine drifts over seconds; runs far apart in time (as in a
table of medians taken one tool after another) carry that drift into their ratio, while two
runs next to each other mostly share it. Used by bench/resize.sh for its goal figures.

usage: paired.py PAIRS CLEAN_DIR LABEL -- COMMAND A... -- COMMAND B...
(CLEAN_DIR is removed before every run: where both commands write their outputs)
"""
import shutil
import statistics
import subprocess
import sys
import time


def main():
    pairs, clean, label = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    rest = sys.argv[4:]
    if rest[:1] != ["--"] or "--" not in rest[1:]:
        sys.exit(__doc__)
    split = rest.index("--", 1)
    a, b = rest[1:split], rest[split + 1:]

    def run(cmd):
        shutil.rmtree(clean, ignore_errors=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0

    run(a), run(b)  # warm-up: page cache, Python's imports
    ratios = []
    for _ in range(pairs):
        ta = run(a)
        ratios.append(ta / run(b))
    print(f"{label}: {statistics.median(ratios):.2f}x, median of {pairs} alternating pairs "
          f"(pairs {min(ratios):.2f}x..{max(ratios):.2f}x)")


if __name__ == "__main__":
    main()
