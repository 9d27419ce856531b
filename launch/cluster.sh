#!/usr/bin/env bash
# A cluster of N hosts on this machine: network namespaces on a private bridge, each with
# its own address, hostname and sshd, links shaped with tc, for many-host Horovod jobs.
#
#   launch/cluster.sh up 2 [--link 10gbit|1gbit|none] [--delay 50us] [--slots 1] [--cpus-per-host K]
#   launch/run.sh -np 2 -H lbsgd-h1:1,lbsgd-h2:1 python -m lbsgd.train --config ...
#   launch/cluster.sh shape --link 1gbit       # reshape the running cluster's links
#   launch/cluster.sh status
#   launch/cluster.sh link lbsgd-h2 down|up    # pull / plug host 2's cable (a host fault)
#   launch/cluster.sh kill lbsgd-h2            # end every process ssh started on host 2
#   launch/cluster.sh down                     # remove everything `up` made
#
# Needs root, iproute2 (ip, tc), openssh-server and util-linux (unshare); launch/install.sh
# installs them. What `up N` makes (and `down` removes, even after a crash):
#   * bridge `lbsgd0` in this machine's namespace with $SUBNET.1/24 (default subnet
#     10.213.0.0/24, LBSGD_CLUSTER_SUBNET=10.x.y to change it; refused if any route or
#     address of this machine overlaps it). No routes, no NAT, no forwarding: traffic stays
#     between this machine and the namespaces, and the namespaces have no default route.
#   * network namespaces lbsgd-h1 ... lbsgd-hN, each with loopback and a veth `lbsgd0`
#     ($SUBNET.11, .12, ...) whose other end (lbsgd-hNv) is a port of the bridge. The
#     interface has the same name on every host and on the launcher (the bridge), so
#     horovodrun's common-interface check finds it and --network-interface lbsgd0 works.
#   * per host an sshd listening only on that host's address, in a UTS namespace of its
#     own (hostname lbsgd-hN, so run.lock, error messages and Horovod name the host),
#     root login by a key made for the cluster only.
#   * /etc/hosts block (# BEGIN/END lbsgd-cluster) naming the hosts, and
#     /etc/ssh/ssh_config.d/lbsgd-cluster.conf (key, known hosts, keepalive) for `ssh
#     lbsgd-h*` - horovodrun and mpirun run plain `ssh`. ~/.ssh is not touched.
#   * state in $LBSGD_CLUSTER_DIR (default /var/lib/lbsgd-cluster): keys, sshd configs and
#     pids, and `hostfile` (lbsgd-h1 slots=1 ...) for `launch/run.sh --hostfile`.
#   * with --cpus-per-host K, host i's sshd (so every process of host i) is pinned to its
#     own K cores ((i-1)K ... iK-1, modulo this machine's cores): a host is then a K-core
#     machine, as lbsgd.parallel.runtime sees it (threads per rank), and the hosts stop sharing
#     cores - what a weak-scaling measurement needs. Default: every host sees every core.
# Every namespace shares this machine's file systems: the same checkout and .venv are seen
# at the same paths on every host, and so are /tmp and /dev/shm.
#
# Links (tc, both directions of each host's link: egress of lbsgd0 inside the host is its
# transmit side, egress of lbsgd-hNv on the bridge its receive side):
#   --link RATE   token-bucket (tbf) rate per direction, e.g. 10gbit, 1gbit, 100mbit; none
#                 (default): veth at memory speed.
#   --delay TIME  one-way latency added on each host's transmit side (netem), e.g. 50us.
#                 Needs the kernel's netem qdisc: refused with the reason where it is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${LBSGD_CLUSTER_DIR:-/var/lib/lbsgd-cluster}"
SUBNET="${LBSGD_CLUSTER_SUBNET:-10.213.0}"
BRIDGE=lbsgd0
IFACE=lbsgd0
HOSTS_FILE=/etc/hosts
SSH_CONF=/etc/ssh/ssh_config.d/lbsgd-cluster.conf
MARK_BEGIN="# BEGIN lbsgd-cluster (launch/cluster.sh; removed by 'cluster.sh down')"
MARK_END="# END lbsgd-cluster"

die() { printf 'launch/cluster.sh: error: %s\n' "$*" >&2; exit 2; }
log() { printf '[lbsgd cluster] %s\n' "$*" >&2; }

usage() {
  sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

need_root() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces, sshd, tc). Received: uid $(id -u)"
  local tool
  for tool in ip tc unshare ssh ssh-keygen /usr/sbin/sshd; do
    command -v "$tool" >/dev/null || die "'$tool' is missing: run 'bash launch/install.sh' first"
  done
}

host_name() { printf 'lbsgd-h%d' "$1"; }
host_addr() { printf '%s.%d' "$SUBNET" $((10 + $1)); }

# -- arguments ------------------------------------------------------------------------
check_subnet() {
  [[ "$SUBNET" =~ ^10\.([0-9]{1,3})\.([0-9]{1,3})$ ]] && ((BASH_REMATCH[1] < 256 && BASH_REMATCH[2] < 256)) \
    || die "LBSGD_CLUSTER_SUBNET must be the first three numbers of a private 10.x.y.0/24 network. Received: LBSGD_CLUSTER_SUBNET=$SUBNET"
}

rate_bits() {   # 10gbit -> 10000000000; "" if not a rate
  [[ "$1" =~ ^([0-9]+)(k|m|g)?bit$ ]] || return 1
  local n="${BASH_REMATCH[1]}" unit="${BASH_REMATCH[2]}"
  case "$unit" in k) n=$((n * 1000)) ;; m) n=$((n * 1000000)) ;; g) n=$((n * 1000000000)) ;; esac
  ((n > 0)) || return 1
  printf '%d' "$n"
}

check_link() {
  [ "$1" = none ] || rate_bits "$1" >/dev/null \
    || die "--link must be a rate such as 10gbit, 1gbit, 100mbit, or none. Received: --link $1"
}

check_delay() {
  [ "$1" = none ] || [[ "$1" =~ ^[0-9]+(us|ms)$ ]] \
    || die "--delay must be a time such as 50us or 1ms, or none. Received: --delay $1"
}

# -- state ----------------------------------------------------------------------------
cluster_hosts() {   # the namespaces that exist now
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^lbsgd-h[0-9]+$' | sort -V || true
}

saved() { [ -f "$STATE/cluster.env" ] && sed -n "s/^$1=//p" "$STATE/cluster.env"; }

# -- subnet collision -----------------------------------------------------------------
ip_int() { local IFS=.; set -- $1; printf '%d' $((($1 << 24) + ($2 << 16) + ($3 << 8) + $4)); }

overlaps_subnet() {   # CIDR -> 0 if it overlaps $SUBNET.0/24
  local net="${1%/*}" len="${1#*/}"
  [ "$net" = "$1" ] && len=32
  local a b mask
  a=$(ip_int "$net"); b=$(ip_int "$SUBNET.0")
  ((len < 24)) && mask=$((len)) || mask=24
  ((mask == 0)) && return 0
  local m=$(((0xffffffff << (32 - mask)) & 0xffffffff))
  (((a & m) == (b & m)))
}

check_subnet_free() {
  local line dev cidr
  while read -r line; do
    cidr="${line%% *}"
    [ "$cidr" = default ] && continue
    dev="$(sed -n 's/.* dev \([^ ]*\).*/\1/p' <<<"$line")"
    [ "$dev" = "$BRIDGE" ] && continue
    overlaps_subnet "$cidr" && die "subnet $SUBNET.0/24 overlaps this machine's route '$line': set LBSGD_CLUSTER_SUBNET to a free 10.x.y"
  done < <(ip -4 route show table all | grep -v '^local\|^broadcast' || true)
  while read -r dev cidr; do
    [ "$dev" = "$BRIDGE" ] && continue
    overlaps_subnet "$cidr" && die "subnet $SUBNET.0/24 overlaps address $cidr on $dev: set LBSGD_CLUSTER_SUBNET to a free 10.x.y"
  done < <(ip -4 -o addr show | awk '{print $2, $4}')
  return 0
}

# -- system files (marked, idempotent) ------------------------------------------------
without_block() { sed "/^# BEGIN lbsgd-cluster/,/^# END lbsgd-cluster/d" "$1"; }

write_hosts_block() {   # N
  local text i
  text="$(without_block "$HOSTS_FILE")"
  {
    printf '%s\n' "$text"
    printf '%s\n' "$MARK_BEGIN"
    for ((i = 1; i <= $1; i++)); do printf '%s %s\n' "$(host_addr "$i")" "$(host_name "$i")"; done
    printf '%s\n' "$MARK_END"
  } > "$STATE/hosts.new"
  cat "$STATE/hosts.new" > "$HOSTS_FILE"    # in place: /etc/hosts may be a bind mount
  rm -f "$STATE/hosts.new"
}

remove_hosts_block() {
  grep -q '^# BEGIN lbsgd-cluster' "$HOSTS_FILE" 2>/dev/null || return 0
  local text
  text="$(without_block "$HOSTS_FILE")"
  printf '%s\n' "$text" > "$HOSTS_FILE"
}

write_ssh_conf() {
  grep -qsE '^\s*Include\s+/etc/ssh/ssh_config\.d/\*\.conf' /etc/ssh/ssh_config \
    || die "/etc/ssh/ssh_config does not include /etc/ssh/ssh_config.d/*.conf (Debian's default): add that line, then run 'up' again"
  cat > "$SSH_CONF" <<EOF
# lbsgd namespace cluster (launch/cluster.sh); removed by 'launch/cluster.sh down'.
Host lbsgd-h*
    User root
    IdentityFile $STATE/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $STATE/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    HashKnownHosts no
    BatchMode yes
    ConnectTimeout 10
    ServerAliveInterval 5
    ServerAliveCountMax 3
    LogLevel ERROR
EOF
}

# -- keys -----------------------------------------------------------------------------
make_keys() {   # N
  install -d -m 700 "$STATE"
  [ -f "$STATE/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C lbsgd-cluster -f "$STATE/id_ed25519"
  [ -f "$STATE/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C lbsgd-cluster-host -f "$STATE/ssh_host_ed25519_key"
  printf 'from="%s.0/24" %s\n' "$SUBNET" "$(cat "$STATE/id_ed25519.pub")" > "$STATE/authorized_keys"
  chmod 600 "$STATE/authorized_keys"
  local i hostkey
  hostkey="$(cut -d' ' -f1,2 "$STATE/ssh_host_ed25519_key.pub")"
  : > "$STATE/known_hosts"
  for ((i = 1; i <= $1; i++)); do
    printf '%s,%s %s\n' "$(host_name "$i")" "$(host_addr "$i")" "$hostkey" >> "$STATE/known_hosts"
  done
}

# -- hosts ----------------------------------------------------------------------------
make_bridge() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip -d link show "$BRIDGE" | grep -q 'bridge ' \
    || die "interface $BRIDGE exists and is not a bridge: remove it or run 'down'"
  ip addr replace "$SUBNET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

make_host() {   # i
  local i=$1 ns veth
  ns="$(host_name "$i")"; veth="${ns}v"
  ip netns add "$ns"
  ip link add "$veth" type veth peer name "${ns}p"
  ip link set "${ns}p" netns "$ns"
  ip -n "$ns" link set "${ns}p" name "$IFACE"
  ip link set "$veth" master "$BRIDGE"
  ip link set "$veth" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$(host_addr "$i")/24" dev "$IFACE"
  ip -n "$ns" link set "$IFACE" up
}

start_sshd() {   # i cpus-per-host
  local i=$1 cpus=$2 ns conf pin=()
  ns="$(host_name "$i")"; conf="$STATE/sshd_config.$ns"
  cat > "$conf" <<EOF
# sshd of cluster host $ns (launch/cluster.sh): this host's address only, key login only.
ListenAddress $(host_addr "$i"):22
HostKey $STATE/ssh_host_ed25519_key
PidFile $STATE/sshd.$ns.pid
AuthorizedKeysFile $STATE/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
PrintLastLog no
UseDNS no
MaxStartups 64:30:128
MaxSessions 64
ClientAliveInterval 5
ClientAliveCountMax 3
LogLevel ERROR
EOF
  install -d -m 755 /run/sshd
  /usr/sbin/sshd -t -f "$conf" || die "sshd rejected $conf"
  if [ "$cpus" != all ]; then
    local cores first
    cores="$(nproc --all)"
    first=$(((i - 1) * cpus % cores))
    pin=(taskset -c "$(seq "$first" $((first + cpus - 1)) | awk -v n="$cores" '{printf "%s%d", (NR > 1 ? "," : ""), $1 % n}')")
  fi
  # hostname of its own: sshd and every session it starts see `hostname` = $ns
  ip netns exec "$ns" "${pin[@]}" unshare --uts -- /bin/sh -c 'hostname "$1" && exec /usr/sbin/sshd -f "$2"' \
    sh "$ns" "$conf"
}

apply_shaping() {   # link delay
  local link=$1 delay=$2 ns bits burst
  local spec=()
  if [ "$link" != none ]; then
    bits="$(rate_bits "$link")"
    burst=$((bits / 8 / 10000)); ((burst >= 131072)) || burst=131072   # >= 100 us of data, >= 2 GSO packets
  fi
  for ns in $(cluster_hosts); do
    for side in in out; do
      local cmd=(tc) dev="${ns}v"
      [ "$side" = out ] && { cmd=(ip netns exec "$ns" tc); dev="$IFACE"; }
      "${cmd[@]}" qdisc del dev "$dev" root 2>/dev/null || true
      if [ "$side" = out ] && [ "$delay" != none ]; then
        spec=(netem delay "$delay")
        [ "$link" != none ] && spec+=(rate "$link")
        "${cmd[@]}" qdisc add dev "$dev" root "${spec[@]}" limit 100000
      elif [ "$link" != none ]; then
        "${cmd[@]}" qdisc add dev "$dev" root tbf rate "$link" burst "$burst" latency 50ms
      fi
    done
  done
}

check_netem() {   # a throw-away namespace tells whether this kernel has netem
  local probe=lbsgd-netem-probe out rc=0
  ip netns add "$probe"
  out="$(ip netns exec "$probe" tc qdisc add dev lo root netem delay 1us 2>&1)" || rc=$?
  ip netns del "$probe"
  ((rc == 0)) || die "--delay needs the kernel's netem qdisc (CONFIG_NET_SCH_NETEM), which this kernel lacks ('tc qdisc add ... netem' said: $out); use --delay none, or a kernel with netem. Received: --delay $1"
}

write_hostfile() {   # N slots
  local i
  : > "$STATE/hostfile"
  for ((i = 1; i <= $1; i++)); do printf '%s slots=%d\n' "$(host_name "$i")" "$2" >> "$STATE/hostfile"; done
}

verify() {   # N: every host answers over ssh with its own name and sees this checkout
  local i ns got venv
  venv="$ROOT/.venv/bin/python"
  for ((i = 1; i <= $1; i++)); do
    ns="$(host_name "$i")"
    got=""
    for _ in $(seq 1 50); do
      got="$(ssh "$ns" "hostname; test -d '$ROOT' && echo checkout; test -x '$venv' && echo venv" 2>/dev/null | tr '\n' ' ')" && break
      sleep 0.1
    done
    [[ "$got" == "$ns checkout venv " ]] \
      || die "host $ns does not answer over ssh as expected (got: '${got:-nothing}'); see 'launch/cluster.sh status'"
  done
}

healthy() {   # N cpus-per-host: is exactly this cluster up?
  [ "$(saved hosts)" = "$1" ] && [ "$(saved cpus_per_host)" = "$2" ] || return 1
  [ "$(cluster_hosts | wc -l)" -eq "$1" ] || return 1
  local i pid
  for ((i = 1; i <= $1; i++)); do
    pid="$(cat "$STATE/sshd.$(host_name "$i").pid" 2>/dev/null)" || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    ip link show "$(host_name "$i")v" 2>/dev/null | grep -q 'state UP' || return 1
  done
  grep -q '^# BEGIN lbsgd-cluster' "$HOSTS_FILE" && [ -f "$SSH_CONF" ]
}

# The arguments of up and shape in ARGS, each --name=value split into --name value.
split_equals() {
  ARGS=()
  local a
  for a in "$@"; do
    if [[ "$a" == --*=* ]]; then ARGS+=("${a%%=*}" "${a#*=}"); else ARGS+=("$a"); fi
  done
}

cmd_up() {
  local n="" link=none delay=none slots=1 cpus=all
  split_equals "$@"; set -- "${ARGS[@]}"
  while (($#)); do
    case "$1" in
      --link) link="${2:-}"; shift 2 ;;
      --delay) delay="${2:-}"; shift 2 ;;
      --slots) slots="${2:-}"; shift 2 ;;
      --cpus-per-host) cpus="${2:-}"; shift 2 ;;
      -*) die "unknown option '$1' (up N [--link RATE] [--delay TIME] [--slots K] [--cpus-per-host K])" ;;
      *) n="$1"; shift ;;
    esac
  done
  [[ "$n" =~ ^[0-9]+$ ]] && ((n >= 1 && n <= 200)) || die "up needs the number of hosts, 1 to 200. Received: '${n}'"
  [[ "$slots" =~ ^[0-9]+$ ]] && ((slots >= 1)) || die "--slots must be >= 1. Received: --slots $slots"
  [ "$cpus" = all ] || { [[ "$cpus" =~ ^[0-9]+$ ]] && ((cpus >= 1 && cpus <= $(nproc --all))); } \
    || die "--cpus-per-host must be 1 to $(nproc --all) (this machine's cores) or all. Received: --cpus-per-host $cpus"
  check_link "$link"; check_delay "$delay"; check_subnet
  need_root
  [ "$delay" = none ] || check_netem "$delay"
  if healthy "$n" "$cpus"; then
    log "cluster of $n hosts is up; links: $link, delay $delay"
  else
    [ -z "$(cluster_hosts)" ] && [ ! -f "$STATE/cluster.env" ] || cmd_down
    check_subnet_free
    log "creating $n hosts on $SUBNET.0/24 (bridge $BRIDGE)"
    make_keys "$n"
    make_bridge
    local i
    for ((i = 1; i <= n; i++)); do make_host "$i"; done
    write_hosts_block "$n"
    write_ssh_conf
    for ((i = 1; i <= n; i++)); do start_sshd "$i" "$cpus"; done
  fi
  apply_shaping "$link" "$delay"
  write_hostfile "$n" "$slots"
  printf 'hosts=%s\nsubnet=%s\nlink=%s\ndelay=%s\nslots=%s\ncpus_per_host=%s\nroot=%s\n' \
    "$n" "$SUBNET" "$link" "$delay" "$slots" "$cpus" "$ROOT" > "$STATE/cluster.env"
  verify "$n"
  log "ready: $(cluster_hosts | tr '\n' ' ')- hostfile $STATE/hostfile, interface $IFACE"
}

cmd_shape() {
  local link="" delay=""
  split_equals "$@"; set -- "${ARGS[@]}"
  while (($#)); do
    case "$1" in
      --link) link="${2:-}"; shift 2 ;;
      --delay) delay="${2:-}"; shift 2 ;;
      *) die "unknown argument '$1' (shape --link RATE [--delay TIME])" ;;
    esac
  done
  need_root
  [ -f "$STATE/cluster.env" ] || die "no cluster is up: run 'launch/cluster.sh up N' first"
  link="${link:-$(saved link)}"; delay="${delay:-$(saved delay)}"
  check_link "$link"; check_delay "$delay"
  [ "$delay" = none ] || check_netem "$delay"
  apply_shaping "$link" "$delay"
  sed -i "s/^link=.*/link=$link/; s/^delay=.*/delay=$delay/" "$STATE/cluster.env"
  log "links: $link, delay $delay"
}

cmd_status() {
  local ns
  if [ -z "$(cluster_hosts)" ]; then echo "no cluster"; return 0; fi
  [ -f "$STATE/cluster.env" ] && tr '\n' ' ' < "$STATE/cluster.env" && echo
  for ns in $(cluster_hosts); do
    local pid
    pid="$(cat "$STATE/sshd.$ns.pid" 2>/dev/null || echo -)"
    printf '%s  %s  sshd pid %s  cpus %s  link %s\n' "$ns" \
      "$(ip -n "$ns" -4 -o addr show dev "$IFACE" 2>/dev/null | awk '{print $4}')" "$pid" \
      "$(taskset -cp "$pid" 2>/dev/null | sed 's/.*: //' || echo -)" \
      "$(ip -br link show "${ns}v" 2>/dev/null | awk '{print $2}')"
    tc qdisc show dev "${ns}v" 2>/dev/null | sed 's/^/    rx: /'
    ip netns exec "$ns" tc qdisc show dev "$IFACE" 2>/dev/null | sed 's/^/    tx: /'
  done
}

host_arg() {
  [[ "${1:-}" =~ ^lbsgd-h[0-9]+$ ]] && ip netns list | awk '{print $1}' | grep -qx "$1" \
    || die "no cluster host '${1:-}' (hosts: $(cluster_hosts | tr '\n' ' '))"
}

cmd_link() {   # HOST up|down
  need_root; host_arg "${1:-}"
  case "${2:-}" in up|down) ip link set "$1v" "$2" ;; *) die "link needs up or down. Received: '${2:-}'" ;; esac
}

kill_pids() {   # pids...: TERM, then KILL what is left after 5 s
  (($#)) || return 0
  kill -TERM "$@" 2>/dev/null || true
  local left=("$@") p
  for _ in $(seq 1 50); do
    left=()
    for p in "$@"; do kill -0 "$p" 2>/dev/null && left+=("$p"); done
    ((${#left[@]})) || return 0
    sleep 0.1
  done
  kill -KILL "${left[@]}" 2>/dev/null || true
}

cmd_kill() {   # HOST: every process on the host except its sshd
  need_root; host_arg "${1:-}"
  local sshd pids=() p
  sshd="$(cat "$STATE/sshd.$1.pid" 2>/dev/null || echo 0)"
  for p in $(ip netns pids "$1"); do [ "$p" = "$sshd" ] || pids+=("$p"); done
  kill_pids "${pids[@]}"
}

cmd_down() {
  need_root
  local ns pid pids=() f
  # the hosts' sshd daemons (also those whose namespace or pid file is already gone), known
  # by their command line, which names this cluster's own sshd_config files
  for f in /proc/[0-9]*/cmdline; do
    if tr '\0' ' ' < "$f" 2>/dev/null | grep -q "sshd -f $STATE/sshd_config\.lbsgd-h[0-9]"; then
      pid="${f#/proc/}"; pids+=("${pid%/cmdline}")
    fi
  done
  # every process inside a cluster namespace (sessions sshd started: ranks, orted, shells)
  for ns in $(cluster_hosts); do
    for pid in $(ip netns pids "$ns"); do pids+=("$pid"); done
  done
  kill_pids "${pids[@]}"
  for ns in $(cluster_hosts); do ip netns del "$ns"; done
  for f in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E '^lbsgd-h[0-9]+v$' || true); do
    ip link del "$f" 2>/dev/null || true
  done
  if ip -d link show "$BRIDGE" 2>/dev/null | grep -q 'bridge '; then ip link del "$BRIDGE"; fi
  remove_hosts_block
  rm -f "$SSH_CONF"
  # only the files `up` makes: LBSGD_CLUSTER_DIR may name a directory that holds more
  rm -f "$STATE"/{id_ed25519,id_ed25519.pub,ssh_host_ed25519_key,ssh_host_ed25519_key.pub} \
        "$STATE"/{authorized_keys,known_hosts,hostfile,cluster.env,hosts.new} \
        "$STATE"/sshd_config.lbsgd-h* "$STATE"/sshd.lbsgd-h*.pid
  [ -d "$STATE" ] && rmdir "$STATE" 2>/dev/null || true
  log "down: no namespaces, bridge, sshd or system entries left"
}

main() {
  (($#)) || usage
  local cmd="$1"; shift
  case "$cmd" in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    shape) cmd_shape "$@" ;;
    status) cmd_status ;;
    link) cmd_link "$@" ;;
    kill) cmd_kill "$@" ;;
    -h|--help|help) usage ;;
    *) die "unknown command '$cmd' (up, down, shape, status, link, kill)" ;;
  esac
}

main "$@"
