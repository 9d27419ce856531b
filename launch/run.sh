#!/usr/bin/env bash
# Launch an lbsgd job with horovodrun and lbsgd's measured CPU defaults.
# A thin wrapper: it finds the environment and runs `python -m lbsgd.launch` (lbsgd/launch.py,
# lbsgd/launcher/), which decides the job, validates it and runs it as described below.
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
#   LBSGD_PIPELINE_THREADS          tf.data threads per rank (default: 1 per 4 intra-op threads)
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
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
PY="$VENV/bin/python"; [ -x "$PY" ] || PY=python3
exec "$PY" -m lbsgd.launch "$@"
