# Sourced by bench/resize.sh and bench/resize_cold.sh (which set `here` and `root` first): the
# Python with Pillow, the corpora (bench/corpus.sh), the qp binary ($qp: QP_BIN, else a release
# build of this tree) and a scratch directory ($work, removed on exit).
python="${QP_PYTHON:-${QP_VENV:-$HOME/.cache/qp-venv}/bin/python}"
[ -x "$python" ] || python=python3
"$here/corpus.sh"
# QP_BIN=dist/qp measures the shipped static binary (scripts/build-static) instead.
if [ -z "${QP_BIN:-}" ]; then (cd "$root" && cargo build --release --quiet); fi
qp="${QP_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/qp}"
# Outputs (every tool's) go to a tmpfs when there is one: the runs delete and recreate hundreds of
# files, and on a journal-less ext4 (as here) each new inode is then found by skipping every one
# deleted in the last minute (ext4's recently_deleted()), a file-system cost that grows with each
# run and dwarfed the image work. QP_BENCH_TMP picks another place.
tmp="${QP_BENCH_TMP:-}"
[ -n "$tmp" ] || { [ -d /dev/shm ] && [ -w /dev/shm ] && tmp=/dev/shm; } || tmp="${TMPDIR:-/tmp}"
work=$(mktemp -d "$tmp/qp-bench.XXXXXX"); trap 'rm -rf "$work"' EXIT
