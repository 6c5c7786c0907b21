#!/usr/bin/env bash
# Chooses the static binary's allocator by measurement: jemalloc (the default) against musl's
# own malloc (feature system-alloc), on `qp resize` over bench/corpus/small (ImageNet-like
# ~500x375) and bench/corpus/photos (wallpapers up to 5120x2880), with 1 and 2 jobs.
#
#   bench/alloc.sh [RUNS]        (default 5 runs per command; results in bench/out/alloc/)
#
# Both variants are musl release builds (LTO), so this takes a while the first time: the second
# build only recompiles qp itself. Ends with dist/qp being the default (jemalloc) build again.
# Needs hyperfine and the corpus (bench/corpus.sh; scripts/setup installs what both need).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
out=bench/out/alloc
mkdir -p "$out"

bench/corpus.sh
scripts/build-static --features system-alloc >/dev/null
cp dist/qp "$out/qp-musl-malloc"
scripts/build-static >/dev/null
cp dist/qp "$out/qp-jemalloc"

results="$out/results.md"
{
  echo "# qp resize, static musl build: jemalloc vs musl malloc"
  echo
  echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $runs runs each, $(date -u +%F)."
  echo "small: $(ls bench/corpus/small | wc -l) images; photos: $(ls bench/corpus/photos | wc -l) images."
} > "$results"

for corpus in small photos; do
  for jobs in 1 2; do
    table="$out/$corpus-j$jobs.md"
    # env -i: no QP_* setting from the caller's shell changes what is measured.
    hyperfine --style basic --warmup 1 --runs "$runs" \
      --prepare "rm -rf $out/resized" \
      --export-markdown "$table" \
      -n "jemalloc, $corpus, --jobs $jobs" \
      "env -i $out/qp-jemalloc resize bench/corpus/$corpus --out $out/resized --jobs $jobs" \
      -n "musl malloc, $corpus, --jobs $jobs" \
      "env -i $out/qp-musl-malloc resize bench/corpus/$corpus --out $out/resized --jobs $jobs"
    { echo; cat "$table"; } >> "$results"
  done
done
rm -rf "$out/resized"
echo >&2
cat "$results"
