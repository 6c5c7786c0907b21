"""qp resize reading its inputs from disk rather than from the page cache.

Before each cold run the corpus's pages are dropped from the page cache (posix_fadvise
DONTNEED, no privileges needed), so every file is read from the disk, as on a first run over
a folder of photos. Runs alternate, and the figure is the median of the per-pair ratios.

usage: cold.py PAIRS OUT_DIR CORPUS_DIR JOBS QP [QP_BASE]
  with QP only:  cold run / cached run of QP
  with QP_BASE:  QP cold / QP_BASE cold (two builds, e.g. before and after a change)
"""
import os
import shutil
import statistics
import subprocess
import sys
import time


def drop(corpus):
    for root, _, files in os.walk(corpus):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def main():
    if len(sys.argv) not in (6, 7):
        sys.exit(__doc__)
    pairs, out, corpus, jobs, qp = int(sys.argv[1]), *sys.argv[2:6]
    base = sys.argv[6] if len(sys.argv) == 7 else None

    def run(binary, cold):
        shutil.rmtree(out, ignore_errors=True)
        if cold:
            drop(corpus)
        t0 = time.perf_counter()
        subprocess.run([binary, "resize", "--mode", "fit", "--size", "224x224", "--jobs", jobs,
                        "--out", out, corpus], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0

    if base:
        a, b, label = (qp, True), (base, True), f"{qp} cold / {base} cold"
    else:
        a, b, label = (qp, True), (qp, False), "cold / cached"
    run(*a), run(*b)  # warm-up
    times_a, times_b = [], []
    for _ in range(pairs):
        times_a.append(run(*a))
        times_b.append(run(*b))
    ratios = [x / y for x, y in zip(times_a, times_b)]
    print(f"{os.path.basename(corpus)}, {jobs} thread(s): {statistics.median(times_a):.3f} s vs "
          f"{statistics.median(times_b):.3f} s, {label}: {statistics.median(ratios):.2f}x "
          f"(median of {pairs} alternating pairs, {min(ratios):.2f}x..{max(ratios):.2f}x)")


if __name__ == "__main__":
    main()
