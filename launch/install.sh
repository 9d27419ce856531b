#!/usr/bin/env bash
# Idempotent installer for lbsgd on a Debian machine: Debian packages, .venv,
# the pinned Python stack, horovod 0.28.1 built against it, then a build check.
#
#   bash launch/install.sh          # install what is missing, verify
#   bash launch/install.sh --notebook   # also JupyterLab and a "Python (lbsgd)" kernel
#   LBSGD_VENV=/path bash launch/install.sh   # use another virtualenv
#   LBSGD_TF=2.21.0 bash launch/install.sh    # another TensorFlow (README: TensorFlow versions)
#   bash launch/install.sh --into-current-env # the active virtualenv, its TensorFlow kept:
#                                             # horovod built for it, lbsgd installed -e
#
# Horovod 0.28.1 is built from its sdist against the venv's TensorFlow; for TF >= 2.19
# with launch/horovod-0.28.1-tf2.19.patch applied, the wheel kept in
# ~/.cache/lbsgd/ (LBSGD_CACHE) per TF version and patch. A second run with everything
# present only verifies (a few seconds).
set -euo pipefail

NOTEBOOK=0
CURRENT=0
for arg in "$@"; do
  case "$arg" in
    --notebook) NOTEBOOK=1 ;;
    --into-current-env) CURRENT=1 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) printf '[lbsgd install] ERROR: unknown argument %s (--notebook, --into-current-env, --help)\n' "$arg" >&2; exit 2 ;;
  esac
done
# TensorFlow releases horovod 0.28.1 builds against (as released, or with the patch).
TF_SUPPORTED="2.18 2.19 2.20 2.21"
if ((CURRENT)); then
  [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ] \
    || { printf '[lbsgd install] ERROR: --into-current-env needs an active virtualenv (VIRTUAL_ENV is unset); activate the one you train in, or run without the flag for .venv\n' >&2; exit 2; }
  [ -z "${LBSGD_TF:-}" ] \
    || { printf '[lbsgd install] ERROR: --into-current-env keeps the environment'"'"'s TensorFlow; LBSGD_TF=%s does not apply\n' "$LBSGD_TF" >&2; exit 2; }
  LBSGD_VENV="$VIRTUAL_ENV"
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LBSGD_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
HOROVOD_VERSION="0.28.1"
REQ="$ROOT/launch/requirements.txt"
STAMP="$VENV/.lbsgd-install-stamp"
DEFAULT_TF="$(sed -n 's/^tensorflow-cpu==//p' "$REQ")"
TF_VERSION="${LBSGD_TF:-}"               # empty: the venv's own, else DEFAULT_TF (after step 2)
PATCH="$ROOT/launch/horovod-$HOROVOD_VERSION-tf2.19.patch"
CACHE="${LBSGD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lbsgd}"
HVD_STAMP="$VENV/.lbsgd-horovod-tf"      # the TensorFlow version horovod was built against
[[ -z "$TF_VERSION" || "$TF_VERSION" =~ ^2\.[0-9]+\.[0-9]+$ ]] \
  || { printf '[lbsgd install] ERROR: LBSGD_TF must be a TensorFlow release such as 2.21.0. Received: LBSGD_TF=%s\n' "$TF_VERSION" >&2; exit 2; }

log() { printf '[lbsgd install] %s\n' "$*" >&2; }
# pip, quiet, without the machine's notes about absent local package mirrors and without
# setuptools' notice that a checkout's folders shadow the editable install (it is meant to).
pipq() {
  local rc=0 noise="is ignored: it is neither a file nor a directory|BuildBackendWarning"
  noise+="|Please be careful with folders in your working directory|as they may take precedence"
  noise+="|warnings.warn\(msg, InformationOnly\)|^[[:space:]]*$"
  "$VPY" -m pip "$@" -q --disable-pip-version-check 2> >(grep -vE "$noise" >&2) || rc=$?
  return "$rc"
}
die() { printf '[lbsgd install] ERROR: %s\n' "$*" >&2; exit 1; }

# 1. Debian packages (MPI for horovod, a compiler and cmake for its build; Fashion-MNIST,
#    the real data of the reproduction suite; ssh, iproute2 and util-linux for the
#    namespace cluster of launch/cluster.sh and for many-host jobs).
DEB_PKGS=(openmpi-bin libopenmpi-dev g++ cmake dataset-fashion-mnist
          openssh-server openssh-client iproute2 util-linux patch)
missing=()
for p in "${DEB_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # openssh-server's install would start a system sshd on every address; launch/cluster.sh
  # runs its own, on namespace addresses only. Debian's policy-rc.d (exit 101) keeps
  # services from starting during this install, and is removed after it.
  guard=""
  if [[ " ${missing[*]} " == *" openssh-server "* ]] && [ ! -e /usr/sbin/policy-rc.d ]; then
    guard=/usr/sbin/policy-rc.d
    trap '$SUDO rm -f "$guard"' EXIT
    printf '#!/bin/sh\n# lbsgd launch/install.sh: no service starts while it installs\nexit 101\n' \
      | $SUDO tee "$guard" >/dev/null
    $SUDO chmod 755 "$guard"
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$guard" ]; then $SUDO rm -f "$guard"; trap - EXIT; fi
fi

# 2. The virtualenv.
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
# The TensorFlow to build against: LBSGD_TF, else the one already in the venv (a venv you
# train in keeps its TensorFlow), else launch/requirements.txt's.
TF_DIST=tensorflow-cpu                    # the distribution: `tensorflow` where the venv has it
found="$("$VPY" -c 'import importlib.metadata as m
for d in ("tensorflow-cpu", "tensorflow"):
    try:
        print(d, m.version(d)); break
    except m.PackageNotFoundError:
        pass' 2>/dev/null || true)"
[ -z "$found" ] || TF_DIST="${found%% *}"
if ((CURRENT)) && [ -z "$found" ]; then
  die "--into-current-env: $VENV has no TensorFlow; install yours first (e.g. pip install tensorflow-cpu==2.21.0), or run without the flag"
fi
if [ -z "$TF_VERSION" ]; then
  TF_VERSION="${found#* }"
  if ((CURRENT)); then
    log "building for the environment's tensorflow $TF_VERSION ($TF_DIST)"
  elif [ -n "$TF_VERSION" ] && [ "$TF_VERSION" != "$DEFAULT_TF" ]; then
    log "keeping the venv's tensorflow $TF_VERSION (LBSGD_TF=$DEFAULT_TF bash launch/install.sh installs the default)"
  fi
  TF_VERSION="${TF_VERSION:-$DEFAULT_TF}"
  [[ "$TF_VERSION" =~ ^2\.[0-9]+\.[0-9]+ ]] || die "the venv's tensorflow '$TF_VERSION' is not a 2.x release"
  TF_VERSION="$(grep -oE '^2\.[0-9]+\.[0-9]+' <<<"$TF_VERSION")"
fi
[[ " $TF_SUPPORTED " == *" ${TF_VERSION%.*} "* ]] \
  || die "tensorflow $TF_VERSION is not supported: horovod $HOROVOD_VERSION builds here against ${TF_SUPPORTED// /, } (README: TensorFlow versions)"

# 3. The Python stack and horovod, unless the stamp says they are in place. With another
#    TensorFlow than the pinned one: the same requirements with that TensorFlow (and, for
#    TF 2.18, tensorflow-metadata < 1.18: later ones are generated for protobuf 6, and
#    TF 2.18 pins protobuf < 6).
req="$REQ"
if ((CURRENT)); then   # the environment's own stack: lbsgd's runtime needs and horovod's build
  req="$VENV/.lbsgd-requirements.txt"
  printf '%s\n' "$TF_DIST==$TF_VERSION" numpy absl-py scikit-learn "tensorboard>=2.18" \
    packaging cloudpickle psutil pyyaml setuptools wheel >"$req"
elif [ "$TF_VERSION" != "$DEFAULT_TF" ] || [ "$TF_DIST" != tensorflow-cpu ]; then
  req="$VENV/.lbsgd-requirements.txt"
  sed "s/^tensorflow-cpu==.*/$TF_DIST==$TF_VERSION/" "$REQ" >"$req"
  [ "${TF_VERSION%.*}" != 2.18 ] || printf '%s\n' "tensorflow-metadata>=1.16,<1.18" >>"$req"
fi
want="$(cat "$REQ" "$ROOT/launch/install.sh" "$ROOT/setup.cfg" "$ROOT/setup.py" "$PATCH" 2>/dev/null | sha256sum | cut -d' ' -f1) tf$TF_VERSION"
have="$(cat "$STAMP" 2>/dev/null || true)"
# horovod's build environment: TensorFlow, MPI and Gloo; nothing else.
hvd_env=(env HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1
         HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1
         MAKEFLAGS="${MAKEFLAGS:--j2}" CMAKE_POLICY_VERSION_MINIMUM=3.5)
build_horovod() {   # builds horovod against the venv's TensorFlow, one clear line if it fails
  local log="$VENV/horovod-build.log" minor tmp wheel_dir
  minor="$(cut -d. -f2 <<<"$TF_VERSION")"
  if ((minor < 19)); then
    log "building horovod $HOROVOD_VERSION against tensorflow $TF_VERSION (TensorFlow, MPI, Gloo; ~3 min; pip caches the wheel)"
    "${hvd_env[@]}" "$VPY" -m pip install --no-build-isolation --disable-pip-version-check \
      "horovod==$HOROVOD_VERSION" >"$log" 2>&1 \
      || die "horovod $HOROVOD_VERSION did not build against tensorflow $TF_VERSION; the build log is $log"
    return
  fi
  # TF >= 2.19: the sdist with lbsgd's patch; the wheel kept per TF version and patch.
  wheel_dir="$CACHE/horovod-$HOROVOD_VERSION-tf$TF_VERSION-$(sha256sum "$PATCH" | cut -c1-12)"
  if ! ls "$wheel_dir"/horovod-"$HOROVOD_VERSION"-*.whl >/dev/null 2>&1; then
    log "building horovod $HOROVOD_VERSION against tensorflow $TF_VERSION with $(basename "$PATCH") (~3 min; the wheel is kept in $wheel_dir)"
    tmp="$(mktemp -d)"
    { "$VPY" -m pip download --no-deps --no-binary :all: --disable-pip-version-check \
        -d "$tmp" "horovod==$HOROVOD_VERSION" \
      && tar xzf "$tmp/horovod-$HOROVOD_VERSION.tar.gz" -C "$tmp" \
      && patch -p1 -d "$tmp/horovod-$HOROVOD_VERSION" <"$PATCH" \
      && "${hvd_env[@]}" "$VPY" -m pip wheel --no-deps --no-build-isolation \
           --disable-pip-version-check -w "$tmp/wheel" "$tmp/horovod-$HOROVOD_VERSION"; } >"$log" 2>&1 \
      || { rm -rf "$tmp"; die "horovod $HOROVOD_VERSION did not build against tensorflow $TF_VERSION (patched); the build log is $log"; }
    mkdir -p "$wheel_dir"
    mv "$tmp"/wheel/horovod-*.whl "$wheel_dir"/
    rm -rf "$tmp"
  fi
  pipq install --no-deps --force-reinstall "$wheel_dir"/horovod-"$HOROVOD_VERSION"-*.whl
}
if [ "$want" != "$have" ] || ! "$VPY" -c "import horovod.tensorflow, lbsgd" >/dev/null 2>&1; then
  log "installing the Python stack with tensorflow-cpu $TF_VERSION (pip caches wheels)"
  pipq install --upgrade pip
  pipq install -r "$req"
  have_tf="$("$VPY" -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null || true)"
  [ "$have_tf" = "$TF_VERSION" ] || die "tensorflow $TF_VERSION was asked for, the venv has '$have_tf'"
  if [ "$(cat "$HVD_STAMP" 2>/dev/null || true)" != "$TF_VERSION" ] \
     || ! "$VPY" -c "import horovod, sys; sys.exit(horovod.__version__ != '$HOROVOD_VERSION')" >/dev/null 2>&1 \
     || ! "$VPY" -c "import horovod.tensorflow" >/dev/null 2>&1; then
    build_horovod
    printf '%s\n' "$TF_VERSION" > "$HVD_STAMP"
  fi
  pipq install --no-build-isolation --no-deps -e "$ROOT"
  printf '%s\n' "$want" > "$STAMP"
fi

# 4. Verify the horovod build has every part lbsgd uses.
check="$(PATH="$VENV/bin:$PATH" TF_CPP_MIN_LOG_LEVEL=3 "$VENV/bin/horovodrun" --check-build 2>&1)" \
  || die "horovodrun --check-build failed:\n$check"
for part in TensorFlow MPI Gloo; do
  grep -qE "\[X\] $part\b" <<<"$check" \
    || die "horovod was built without $part (horovodrun --check-build says:)
$check
Remove $VENV and the cached wheel (pip cache remove horovod), then run this installer again."
done
# 5. With --notebook: JupyterLab, nbconvert/nbclient and ipykernel (pip install -e .[notebook],
#    held to the pinned stack by the requirements as constraints), and a kernel "Python (lbsgd)"
#    for this venv (in the venv: $VENV/share/jupyter/kernels/lbsgd) that puts this checkout on
#    PYTHONPATH and quiets TensorFlow's start-up log.
if ((NOTEBOOK)); then
  NB_STAMP="$VENV/.lbsgd-notebook-stamp"
  nb_want="$want $ROOT"
  if [ "$nb_want" != "$(cat "$NB_STAMP" 2>/dev/null || true)" ] \
     || [ ! -x "$VENV/bin/jupyter-lab" ] || [ ! -x "$VENV/bin/jupyter-nbconvert" ] \
     || [ ! -f "$VENV/share/jupyter/kernels/lbsgd/kernel.json" ]; then
    log "installing JupyterLab and the notebook tools (pip install -e .[notebook])"
    pipq install --no-build-isolation -c "$req" -e "$ROOT[notebook]"
    "$VPY" -m ipykernel install --sys-prefix --name lbsgd --display-name "Python (lbsgd)" \
      --env PYTHONPATH "$ROOT" --env TF_CPP_MIN_LOG_LEVEL 2 >/dev/null
    printf '%s\n' "$nb_want" > "$NB_STAMP"
  fi
  log "notebooks: make notebook   (or: $VENV/bin/jupyter lab notebooks/; kernel \"Python (lbsgd)\")"
fi

log "ready: $VENV ($("$VPY" -c 'import tensorflow as tf, horovod, keras; print(f"tensorflow {tf.__version__}, keras {keras.__version__}, horovod {horovod.__version__}")' 2>/dev/null))"
