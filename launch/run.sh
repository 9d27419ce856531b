#!/usr/bin/env bash
# Launch an lbsgd job with horovodrun and lbsgd's measured CPU defaults.
#
#   launch/run.sh -np 2 python -m lbsgd.train --config configs/digits_resnet.py
#   launch/run.sh -np 8 -H node1:4,node2:4 python -m lbsgd.train --config ...
#   launch/run.sh -np 64 --hostfile hosts.txt python -m lbsgd.train --config ...
#
# Everything before the program is passed to horovodrun (-np, -H, --hostfile,
# --gloo/--mpi, ...). The defaults below are exported to every rank; set any
# of them in your environment to override it:
#   OMPI_MCA_mpi_yield_when_idle=1  ranks waiting in MPI yield the core instead of
#                                   spinning (62% -> 97% weak scaling, 2 ranks on 2 cores)
#   LBSGD_INTRA_OP_THREADS          TensorFlow threads per rank (default: cores / ranks per host)
#   TF_CPP_MIN_LOG_LEVEL=2          TensorFlow start-up chatter off
# HOROVOD_CYCLE_TIME is left at Horovod's default: 5 ms gained nothing for
# ResNet-50 here and made small allreduces ~10x slower.
#
# A config passed with --config is validated once, here, before any rank starts.
#
# Signals: horovodrun, mpirun and the ranks run in a session of their own. A TERM,
# INT (Ctrl-C) or HUP sent to this launcher is forwarded to that whole session;
# whatever is still alive 20 s later is killed, so no rank outlives the launcher.
# The last epoch's checkpoint is intact (atomic writes): `--resume` continues.
# Exit code: the job's, or 128 + the signal's number (143 TERM, 130 INT, 129 HUP).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LBSGD_VENV:-$ROOT/.venv}"
if [ -x "$VENV/bin/horovodrun" ]; then export PATH="$VENV/bin:$PATH"; fi
command -v horovodrun >/dev/null || { echo "launch/run.sh: horovodrun not found; run 'bash launch/install.sh' first" >&2; exit 2; }

export OMPI_MCA_mpi_yield_when_idle="${OMPI_MCA_mpi_yield_when_idle:-1}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# Split horovodrun's arguments from the program.
hvd_args=(); prog=()
while (($#)); do
  case "$1" in
    python*|*/python*) prog=("$@"); break ;;
    *) hvd_args+=("$1"); shift ;;
  esac
done
((${#prog[@]})) || { echo "launch/run.sh: no program given (e.g. python -m lbsgd.train --config ...)" >&2; exit 2; }
# -h/--help: the program's help, printed here without starting any rank.
for arg in "${prog[@]}"; do case "$arg" in -h|--help) exec "${prog[@]}" ;; esac; done

# Validate an lbsgd.train config once, before any rank starts.
np=1
for ((i = 0; i < ${#hvd_args[@]}; i++)); do
  case "${hvd_args[$i]}" in -np|--num-proc) np="${hvd_args[$((i + 1))]}" ;; esac
done
if [[ " ${prog[*]} " == *" lbsgd.train "* ]]; then
  OMPI_COMM_WORLD_SIZE="$np" "${prog[@]}" --validate_only >/dev/null
fi

# Console: the user sees rank 0's output (and horovodrun's/mpirun's own) without the
# "[1,0]<stdout>:" tags mpirun adds; the other ranks' output goes to a temporary file whose
# tail is printed only if the job fails (lbsgd/rankstreams.py). LBSGD_ALL_RANKS=1 shows every
# rank's tagged output instead. The filters ignore INT/TERM/HUP and end when the job's output does.
# The temporary directory is removed as soon as everything in it is open (nothing is left
# behind, even by a SIGKILL); the other ranks' output stays readable as /dev/fd/5.
if [ "${LBSGD_ALL_RANKS:-0}" != 1 ]; then
  LBSGD_CONSOLE_TTY=0; [ -t 1 ] && LBSGD_CONSOLE_TTY=1   # 1: rank 0 may redraw its line
  export LBSGD_CONSOLE_TTY
  console_dir="$(mktemp -d "${TMPDIR:-/tmp}/lbsgd-console.XXXXXX")"
  mkfifo "$console_dir/out" "$console_dir/err"
  exec 5<>"$console_dir/others"
  (trap '' INT TERM HUP; exec "${prog[0]}" -m lbsgd.rankstreams /dev/fd/5 <"$console_dir/out") &
  console_pids=($!)
  (trap '' INT TERM HUP; exec "${prog[0]}" -m lbsgd.rankstreams /dev/fd/5 <"$console_dir/err" >&2) &
  console_pids+=($!)
  exec 3>&1 4>&2 >"$console_dir/out" 2>"$console_dir/err"
  rm -rf "$console_dir"
  console_close() {
    local rc=$? _
    exec 1>&3 2>&4 3>&- 4>&-
    for _ in $(seq 1 100); do kill -0 "${console_pids[@]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${console_pids[@]}" 2>/dev/null || true
    wait "${console_pids[@]}" 2>/dev/null || true
    if [ "$rc" -ne 0 ] && [ -s /dev/fd/5 ]; then
      echo "launch/run.sh: the job exited with code $rc; the other ranks' last output:" >&2
      tail -n 40 /dev/fd/5 >&2
    fi
    exec 5>&-
  }
  trap console_close EXIT
fi

setsid horovodrun "${hvd_args[@]}" "${prog[@]}" &
child=$!
forward() {
  trap '' TERM INT HUP
  kill -TERM -- "-$child" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 -- "-$child" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL -- "-$child" 2>/dev/null || true
  wait "$child" 2>/dev/null || true
  exit "$1"
}
trap 'forward 143' TERM
trap 'forward 130' INT
trap 'forward 129' HUP
set +e
wait "$child"
rc=$?
exit "$rc"
