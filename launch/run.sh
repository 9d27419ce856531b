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
# Many hosts (-H h1:1,h2:1 or --hostfile naming hosts other than this one):
#   * Network interface: --network-interface IFACE if given, else LBSGD_NETWORK_INTERFACE,
#     else the interface of this machine's route to the first host (`ip route get`). It is
#     passed to horovodrun as --network-interface (MPI: btl_tcp_if_include; Gloo:
#     HOROVOD_GLOO_IFACE and the rendezvous address) and exported as
#     OMPI_MCA_oob_tcp_if_include (mpirun's own traffic to its daemons), unless set. The
#     name must be the same on every host and here. One line says what was chosen. (Without
#     it horovodrun would test every host's interfaces over ssh first: ~30 s here.)
#   * LBSGD_JOB_ID (exported to every rank) tags the job's processes. If the job fails or
#     is signalled, each host is asked over ssh (5 s) to end the job's processes left there;
#     a host that does not answer is named: "lost host NAME". A vanished host is noticed by
#     ssh's keepalive (ServerAliveInterval; launch/cluster.sh sets 5 s x 3) or by lbsgd's
#     stall watchdog (LBSGD_STALL_TIMEOUT), whichever comes first.
#
# Signals: horovodrun, mpirun and the ranks run in a session of their own. A TERM,
# INT (Ctrl-C) or HUP sent to this launcher is forwarded to that whole session;
# whatever is still alive 20 s later is killed, so no rank outlives the launcher.
# A launcher that cannot forward (SIGKILL, a crash) is noticed by the job's guard,
# which ends the session the same way (the ranks of this host; remote ranks end
# with mpirun's daemons).
# The last epoch's checkpoint is intact (atomic writes): `--resume` continues.
# Exit code: the job's, or 128 + the signal's number (143 TERM, 130 INT, 129 HUP).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The environment: LBSGD_VENV, else the active virtualenv where Horovod is built into it
# (launch/install.sh --into-current-env), else the checkout's .venv.
VENV="${LBSGD_VENV:-}"
if [ -z "$VENV" ]; then
  VENV="$ROOT/.venv"
  if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/horovodrun" ]; then VENV="$VIRTUAL_ENV"; fi
fi
if [ -x "$VENV/bin/horovodrun" ]; then export PATH="$VENV/bin:$PATH"; fi
command -v horovodrun >/dev/null || { echo "launch/run.sh: horovodrun not found; run 'bash launch/install.sh' first" >&2; exit 2; }

export OMPI_MCA_mpi_yield_when_idle="${OMPI_MCA_mpi_yield_when_idle:-1}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# The job's plan, decided in Python before anything starts (lbsgd/launch.py): horovodrun's
# arguments and the program, -np, the remote hosts (a name resolving to one of this
# machine's addresses is local), the network interface, the job id and heartbeat names.
PLANNER="$VENV/bin/python"; [ -x "$PLANNER" ] || PLANNER=python3
plan="$(LBSGD_LAUNCHER_PID=$$ "$PLANNER" -m lbsgd.launch --shell "$@")" || exit 2
eval "$plan"
# -h/--help: the program's help, printed here without starting any rank.
for arg in "${prog[@]}"; do case "$arg" in -h|--help) exec "${prog[@]}" ;; esac; done

# Validate an lbsgd.train config once, for the job's number of ranks, before any rank starts.
if [[ " ${prog[*]} " == *" lbsgd.train "* ]]; then
  "${prog[@]}" --validate_only --validate_ranks="$np" >/dev/null
fi

if ((${#remote_hosts[@]})); then
  if [ -n "$nic" ]; then
    export OMPI_MCA_oob_tcp_if_include="${OMPI_MCA_oob_tcp_if_include:-$nic}"
    echo "launch/run.sh: ${#remote_hosts[@]} remote host(s) (${remote_hosts[*]}) over network interface $nic ($nic_reason)" >&2
  else
    echo "launch/run.sh: ${#remote_hosts[@]} remote host(s) (${remote_hosts[*]}); no route found: horovodrun picks the interface" >&2
  fi
fi
export LBSGD_JOB_ID="$job_id"

# After a failure or a signal: ask every remote host to end this job's processes left there
# (ranks of a Gloo job, a rank stuck on a partitioned host), naming the hosts that do not answer.
# The launcher's own messages after the job go straight to the user's stderr (fd 4 once the
# console filter below holds fd 2), never through the filter that sorts the ranks' output.
launcher_err=2
remote_cleanup() {
  ((${#remote_hosts[@]})) || return 0
  local host pids=() lost=() i
  local ends="for d in /proc/[0-9]*; do tr '\\0' '\\n' < \$d/environ 2>/dev/null | grep -qx 'LBSGD_JOB_ID=$LBSGD_JOB_ID' && kill -KILL \${d#/proc/} 2>/dev/null; done; rm -rf $heartbeats*; true"
  for host in "${remote_hosts[@]}"; do
    env -u LBSGD_JOB_ID timeout 10 ssh -o BatchMode=yes -o ConnectTimeout=5 "$host" "$ends" </dev/null >/dev/null 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do wait "${pids[$i]}" || lost+=("${remote_hosts[$i]}"); done
  local resume=""
  [[ " ${prog[*]} " == *" lbsgd.train "* ]] && resume=" lbsgd.train's last checkpoint is intact: --resume continues it on the hosts left (README: Many hosts)."
  for host in "${lost[@]}"; do
    if getent ahostsv4 "$host" >/dev/null 2>&1; then
      echo "launch/run.sh: error: lost host $host: it does not answer over ssh within 5 s (link down, partition or host down); the job ended with exit code $1.$resume" >&2
    else
      echo "launch/run.sh: error: host $host: its name does not resolve; the job ended with exit code $1." >&2
    fi
  done
} 2>&"$launcher_err"   # its messages bypass the console filters (see below)

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
  # The filters do not carry LBSGD_JOB_ID: remote_cleanup ends every process that does on
  # each host, and namespace hosts (launch/cluster.sh) share this machine's processes.
  (trap '' INT TERM HUP; exec env -u LBSGD_JOB_ID "${prog[0]}" -m lbsgd.rankstreams /dev/fd/5 <"$console_dir/out") &
  console_pids=($!)
  (trap '' INT TERM HUP; exec env -u LBSGD_JOB_ID "${prog[0]}" -m lbsgd.rankstreams /dev/fd/5 <"$console_dir/err" >&2) &
  console_pids+=($!)
  exec 3>&1 4>&2 >"$console_dir/out" 2>"$console_dir/err"
  launcher_err=4
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
# The job's guard: a process in a session of its own that holds the read end of a pipe
# whose only writer is this launcher (fd 6, opened after every long-lived child started).
# When the launcher ends in any way, SIGKILL included, the guard reads EOF; a job still
# running then had no launcher to stop it, and the guard ends its session as `forward`
# would (TERM, then KILL 20 s later): no rank outlives its launcher by more than ~20 s.
guard_fifo="$(mktemp -u "${TMPDIR:-/tmp}/lbsgd-guard.XXXXXX")"
mkfifo -m 600 "$guard_fifo"
setsid bash -c '
  exec 0<"$1"; rm -f "$1"; while read -r _; do :; done
  kill -0 -- "-$2" 2>/dev/null || exit 0
  echo "launch/run.sh: the launcher is gone; ending its job (session $2)" >&2
  kill -TERM -- "-$2" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 -- "-$2" 2>/dev/null || exit 0; sleep 0.2; done
  kill -KILL -- "-$2" 2>/dev/null; rm -rf "$3"*; exit 0' lbsgd-guard "$guard_fifo" "$child" "$heartbeats" \
  </dev/null >/dev/null 2>&"$launcher_err" 3>&- 5>&- &
exec 6>"$guard_fifo"
forward() {
  trap '' TERM INT HUP
  kill -TERM -- "-$child" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 -- "-$child" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL -- "-$child" 2>/dev/null || true
  wait "$child" 2>/dev/null || true
  remote_cleanup "$1"
  rm -rf "$heartbeats"*
  exit "$1"
}
trap 'forward 143' TERM
trap 'forward 130' INT
trap 'forward 129' HUP
set +e
wait "$child"
rc=$?
((rc == 0)) || remote_cleanup "$rc"
rm -rf "$heartbeats"*       # left by ranks that were killed
exit "$rc"
