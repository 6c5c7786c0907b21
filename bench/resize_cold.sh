#!/usr/bin/env bash
# qp resize on inputs read from the disk (page cache dropped before each run) against the same
# run with the inputs cached, 1 thread and all threads, on bench/corpus (bench/corpus.sh).
# What a first run over a folder of photos costs, and what qp's read-ahead hides of it.
# Run by hand: bench/resize_cold.sh [pairs]
#   env QP_BIN: the qp binary (default: a release build of this tree)
#       QP_BIN_BASE: another build; then each line is QP_BIN cold / QP_BIN_BASE cold instead
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
pairs="${1:-7}"
source "$here/common.sh"
for corpus in photos small; do
  dir="$here/corpus/$corpus"
  for jobs in 1 "$(nproc)"; do
    cmd=(resize --mode fit --size 224x224 --jobs "$jobs" --out "$work/out" "$dir")
    if [ -n "${QP_BIN_BASE:-}" ]; then
      "$python" "$here/paired.py" "$pairs" "$work/out" "$corpus, $jobs thread(s), QP_BIN cold / QP_BIN_BASE cold" \
        --uncache-a "$dir" --uncache-b "$dir" -- "$qp" "${cmd[@]}" -- "$QP_BIN_BASE" "${cmd[@]}"
    else
      "$python" "$here/paired.py" "$pairs" "$work/out" "$corpus, $jobs thread(s), cold / cached" \
        --uncache-a "$dir" -- "$qp" "${cmd[@]}" -- "$qp" "${cmd[@]}"
    fi
  done
done
