"""Alternating timing of two commands: A, B, A, B, ... and the median of the per-pair ratios A/B.

On shared vCPUs the speed of the machine drifts over seconds; runs far apart in time (as in a
table of medians taken one tool after another) carry that drift into their ratio, while two
runs next to each other mostly share it. Used by bench/resize.sh for its goal figures and by
bench/resize_cold.sh.

usage: paired.py PAIRS CLEAN_DIR LABEL [--uncache-a DIR] [--uncache-b DIR] -- COMMAND A... -- COMMAND B...
(CLEAN_DIR is removed before every run: where both commands write their outputs. --uncache-X
drops DIR's files from the page cache before each run of X, untimed, so that X reads them from
the disk: posix_fadvise DONTNEED, no privileges needed.)
"""
import os
import shutil
import statistics
import subprocess
import sys
import time


def uncache(directory):
    for root, _, files in os.walk(directory):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def main():
    pairs, clean, label = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    rest = sys.argv[4:]
    cold = {}
    while rest[:1] in (["--uncache-a"], ["--uncache-b"]) and len(rest) > 1:
        cold[rest[0][-1]] = rest[1]
        rest = rest[2:]
    if rest[:1] != ["--"] or "--" not in rest[1:]:
        sys.exit(__doc__)
    split = rest.index("--", 1)
    a, b = rest[1:split], rest[split + 1:]

    def run(cmd, side):
        shutil.rmtree(clean, ignore_errors=True)
        if side in cold:
            uncache(cold[side])
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0

    run(a, "a"), run(b, "b")  # warm-up: page cache, Python's imports
    ratios = []
    for _ in range(pairs):
        ta = run(a, "a")
        ratios.append(ta / run(b, "b"))
    print(f"{label}: {statistics.median(ratios):.2f}x, median of {pairs} alternating pairs "
          f"(pairs {min(ratios):.2f}x..{max(ratios):.2f}x)")


if __name__ == "__main__":
    main()
