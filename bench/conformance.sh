#!/usr/bin/env bash
# JPEG conformance of qp against libjpeg-turbo (Pillow's decode and djpeg's warnings):
#   bench/conformance.sh DIR_OR_FILE...      (env QP_BIN: the qp binary, else a release build)
# Prints each failing file's category and a total; exits 1 on any failure (bench/conformance.py).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
python="${QP_PYTHON:-${QP_VENV:-$HOME/.cache/qp-venv}/bin/python}"
[ -x "$python" ] || python=python3
if [ -z "${QP_BIN:-}" ]; then (cd "$root" && cargo build --release --quiet); fi
qp="${QP_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/qp}"
exec "$python" "$here/conformance.py" --qp "$qp" "$@"
