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
  echo "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "$runs runs each after a warm-up, $(date -u +%F). small: $(ls bench/corpus/small | wc -l) images; photos: $(ls bench/corpus/photos | wc -l) images."
  echo "CPU time (user + sys) is less disturbed than wall time by other work on the machine."
  echo
  echo "| corpus | jobs | allocator | wall, mean ± σ | CPU (user + sys) |"
  echo "|---|---|---|---|---|"
} > "$results"

for corpus in small photos; do
  for jobs in 1 2; do
    json="$out/$corpus-j$jobs.json"
    # env -i: no QP_* setting from the caller's shell changes what is measured.
    hyperfine --style basic --warmup 1 --runs "$runs" \
      --prepare "rm -rf $out/resized" \
      --export-json "$json" \
      -n jemalloc "env -i $out/qp-jemalloc resize bench/corpus/$corpus --out $out/resized --jobs $jobs" \
      -n "musl malloc" "env -i $out/qp-musl-malloc resize bench/corpus/$corpus --out $out/resized --jobs $jobs"
    jq -r --arg corpus "$corpus" --arg jobs "$jobs" '.results[] |
      "| \($corpus) | \($jobs) | \(.command) | \(.mean * 100 | round / 100) s ± \(.stddev * 100 | round / 100) | \((.user + .system) * 100 | round / 100) s |"' \
      "$json" >> "$results"
  done
done
rm -rf "$out/resized"
echo >&2
cat "$results"
