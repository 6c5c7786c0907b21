# Sourced by bench/enqueue.sh, bench/scale.sh and bench/work.sh. Sets $python and $moto (from
# the venv of scripts/setup, or QP_PYTHON and QP_MOTO_SERVER; a $venv set before wins).
# need TOOL...: stops, saying what to run, if one is missing. start_moto: a private moto server
# on a free port ($moto_port, $moto_pid), with AWS_ENDPOINT_URL exported to it, once it answers.
# stop_moto: ends it (safe to call twice).
venv="${venv:-${QP_VENV:-$HOME/.cache/qp-venv}}"
python="${QP_PYTHON:-$venv/bin/python}"
moto="${QP_MOTO_SERVER:-$venv/bin/moto_server}"
need() {
  for tool in "$@"; do
    [ -x "$tool" ] || { echo "$(basename "$0"): $tool is missing (cargo build --release; scripts/setup)" >&2; exit 1; }
  done
}
moto_pid=""
moto_port=""
start_moto() {
  moto_port="$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  # Through tests/moto_server.py, with the Python on moto_server's #! line: SQS deletes there
  # cannot drop a message sent at the same time (that file says how moto does).
  local shebang
  read -r shebang < "$moto"
  # shellcheck disable=SC2086 # the #! line may be "/usr/bin/env python3"
  ${shebang#\#!} "$(dirname "${BASH_SOURCE[0]}")/../tests/moto_server.py" -H 127.0.0.1 -p "$moto_port" >/dev/null 2>&1 &
  moto_pid=$!
  export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port"
  for _ in $(seq 100); do
    "$python" -c "import socket; socket.create_connection(('127.0.0.1', $moto_port))" 2>/dev/null && break
    sleep 0.1
  done
}
stop_moto() {
  if [ -n "$moto_pid" ]; then
    kill "$moto_pid" 2>/dev/null || true
    wait "$moto_pid" 2>/dev/null || true
  fi
  moto_pid=""
}
