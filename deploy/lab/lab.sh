#!/usr/bin/env bash
# The network-namespace lab (../shared/design/LAB.md): builds a shape of hosts joined by
# veth links, starts `meshwork up` with a TUN device in each, and tears it all down.
#
#   lab.sh up SHAPE PREFIX [N]  SHAPE: pair (a — b), line (a — b — c: a and c share no
#                               link, b forwards nothing) or star (h1..hN, default 5, on one
#                               switch: a bridge in its own namespace)
#   lab.sh cut PREFIX NAME      partition: take all of NAME's links down
#   lab.sh heal PREFIX NAME     bring them up again
#   lab.sh lossy PREFIX NAME SPEC   netem on NAME's links, e.g. "loss 5% delay 20ms 5ms"; SPEC off removes it
#   lab.sh down PREFIX          kill the nodes (by PID) and delete the namespaces and files
#   lab.sh info PREFIX          print NAME NAMESPACE UNDERLAY OVERLAY STATE for each host
#   lab.sh kill9 PREFIX NAME    SIGKILL one host's node (a crash)
#   lab.sh start PREFIX NAME    start that host's node again, as it was first started
#
# Every name starts with PREFIX (at most 8 characters: letters and digits), so runs never
# collide; every address is inside namespaces this script made: underlay 198.18.0.0/15,
# overlay pool 100.64.0.0/24 (inside 100.64.0.0/10). Needs root, ip (iproute2) and /dev/net/tun.
# MESHWORK (default: meshwork on PATH) is the binary to run; LAB_DIR (default
# /tmp/meshwork-lab-PREFIX) holds states, logs and PIDs.
set -euo pipefail

die() { echo "lab.sh: $*" >&2; exit 1; }
usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 64; }

[ $# -ge 2 ] || usage
cmd=$1; shift
case "$cmd" in
  up) [ $# -ge 2 ] && [ $# -le 3 ] || usage; shape=$1; prefix=$2; count=${3:-5} ;;
  cut|heal) [ $# -eq 2 ] || usage; prefix=$1; target=$2 ;;
  lossy) [ $# -eq 3 ] || usage; prefix=$1; target=$2; spec=$3 ;;
  down|info) [ $# -eq 1 ] || usage; prefix=$1 ;;
  kill9|start) [ $# -eq 2 ] || usage; prefix=$1; target=$2 ;;
  *) usage ;;
esac
[[ "$prefix" =~ ^[A-Za-z0-9]{1,8}$ ]] || die "PREFIX '$prefix' must be 1-8 letters or digits"
MESHWORK=${MESHWORK:-$(command -v meshwork || true)}
dir=${LAB_DIR:-/tmp/meshwork-lab-$prefix}

down() {
  if [ -d "$dir" ]; then
    for pidfile in "$dir"/*.pid; do
      [ -e "$pidfile" ] || continue
      pid=$(cat "$pidfile")
      kill -TERM "$pid" 2>/dev/null || true
    done
    for pidfile in "$dir"/*.pid; do
      [ -e "$pidfile" ] || continue
      pid=$(cat "$pidfile")
      for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$pidfile"
    done
  fi
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${prefix}-" || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns delete "$ns" 2>/dev/null || true
  done
  rm -rf "$dir"
}

if [ "$cmd" = down ]; then down; exit 0; fi

if [ "$cmd" = kill9 ]; then
  [ -f "$dir/$target.pid" ] || die "no host '$target' in lab '$prefix'"
  pid=$(cat "$dir/$target.pid")
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$dir/$target.pid"
  exit 0
fi

links_of() {  # the veth interfaces in host NAME's namespace
  ip netns exec "$prefix-$1" ip -o link show type veth | awk -F': ' '{print $2}' | cut -d@ -f1
}

if [ "$cmd" = cut ] || [ "$cmd" = heal ]; then
  ip netns list | grep -q "^$prefix-$target" || die "no host '$target' in lab '$prefix'"
  state=down; [ "$cmd" = heal ] && state=up
  for l in $(links_of "$target"); do ip netns exec "$prefix-$target" ip link set "$l" "$state"; done
  # A link going down takes its routes with it: put the host's own back.
  if [ "$cmd" = heal ] && [ -f "$dir/$target.routes" ]; then
    while read -r r; do
      # shellcheck disable=SC2086
      ip netns exec "$prefix-$target" ip $r 2>/dev/null || true
    done < "$dir/$target.routes"
  fi
  exit 0
fi

if [ "$cmd" = lossy ]; then
  ip netns list | grep -q "^$prefix-$target" || die "no host '$target' in lab '$prefix'"
  for l in $(links_of "$target"); do
    if [ "$spec" = off ]; then
      ip netns exec "$prefix-$target" tc qdisc del dev "$l" root 2>/dev/null || true
    else
      # shellcheck disable=SC2086
      ip netns exec "$prefix-$target" tc qdisc replace dev "$l" root netem $spec || die "tc netem '$spec' failed: this kernel may lack sch_netem (modprobe sch_netem), or the spec is wrong"
    fi
  done
  exit 0
fi

if [ "$cmd" = info ]; then
  [ -f "$dir/hosts" ] || die "no lab '$prefix' (no $dir/hosts)"
  [ -n "$MESHWORK" ] && [ -x "$MESHWORK" ] || die "no meshwork binary: set MESHWORK=/path/to/meshwork"
  while read -r name ns underlay; do
    state="$dir/state-$name"
    # A stopped node has no address to report ("none"); that must not end the listing.
    overlay=$(ip netns exec "$ns" "$MESHWORK" status --state "$state" --json </dev/null 2>/dev/null \
      | sed -n 's/.*"address":"\([0-9.]*\)".*/\1/p' || true)
    echo "$name $ns $underlay ${overlay:-none} $state"
  done < "$dir/hosts"
  exit 0
fi

host() {  # host NAME: a namespace with loopback up
  local ns="$prefix-$1"
  ip netns add "$ns"
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=0
}

link() {  # link A IFA ADDR_A B IFB ADDR_B: a veth pair between two hosts, /24 each
  local a="$prefix-$1" b="$prefix-$4"
  ip link add "$prefix$2" netns "$a" type veth peer name "$prefix$5" netns "$b"
  ip netns exec "$a" ip addr add "$3/24" dev "$prefix$2"
  ip netns exec "$b" ip addr add "$6/24" dev "$prefix$5"
  ip netns exec "$a" ip link set "$prefix$2" up
  ip netns exec "$b" ip link set "$prefix$5" up
}

close_fds() {  # in the caller's (sub)shell: close every descriptor above 2 but bash's own
  local fd
  for fd in $(ls /proc/$BASHPID/fd); do
    [ "$fd" -gt 2 ] && [ "$fd" -lt 255 ] && eval "exec $fd>&-" 2>/dev/null || true
  done
}

start() {  # start NAME UNDERLAY [PEER...]: meshwork up in the host's namespace
  local name=$1 underlay=$2
  echo "$@" > "$dir/$name.args"
  shift 2
  local ns="$prefix-$name" state="$dir/state-$name" args=()
  for p in "$@"; do args+=(--peer "$p:51830"); done
  # The node runs on after this script: it gets no descriptor but its log (a caller
  # waiting for this script's pipes or exit must not wait for the node too).
  (
    close_fds
    exec ip netns exec "$ns" "$MESHWORK" up --mesh "$dir/lab.mesh" --state "$state" --listen "$underlay:51830" \
      --name "$name" --tun "mw$prefix" ${args[@]+"${args[@]}"} >> "$dir/$name.log" 2>&1 < /dev/null
  ) &
  echo $! > "$dir/$name.pid"
  grep -q "^$name " "$dir/hosts" || echo "$name $ns $underlay" >> "$dir/hosts"
}

wait_address() {  # wait_address NAME: until the node holds an overlay address (30 s at most)
  local name=$1 ns="$prefix-$1"
  for _ in $(seq 1 300); do
    if ip netns exec "$ns" "$MESHWORK" status --state "$dir/state-$name" --json 2>/dev/null | grep -q '"address":"'; then return 0; fi
    sleep 0.1
  done
  die "$name got no overlay address in 30 s; see $dir/$name.log"
}

if [ "$cmd" = start ]; then
  [ -f "$dir/$target.args" ] || die "no host '$target' in lab '$prefix'"
  [ ! -f "$dir/$target.pid" ] || ! kill -0 "$(cat "$dir/$target.pid")" 2>/dev/null || die "'$target' is running"
  # shellcheck disable=SC2046
  start $(cat "$dir/$target.args")
  wait_address "$target"
  exit 0
fi

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, veth links, TUN devices)"
[ -c /dev/net/tun ] || die "needs /dev/net/tun"
[ -n "$MESHWORK" ] && [ -x "$MESHWORK" ] || die "no meshwork binary: set MESHWORK=/path/to/meshwork"
command -v ip >/dev/null || die "needs ip (apt-get install -y iproute2)"

trap 'echo "lab.sh: failed; tearing down" >&2; down' EXIT
down
mkdir -p "$dir"
: > "$dir/hosts"

# The genesis (first owner of the pool) is the host every other one can reach: a in the
# pair, b in the middle of the line.
genesis=a
[ "$shape" = line ] && genesis=b
[ "$shape" = star ] && genesis=h1
"$MESHWORK" mesh create --name "lab$prefix" --pool 100.64.0.0/24 --reclaim 30s \
  --key "$dir/state-$genesis/identity.key" --out "$dir/lab.mesh" > /dev/null 2>&1 \
  || die "meshwork mesh create failed"

case "$shape" in
  pair)
    host a; host b
    link a a0 198.18.0.1 b b0 198.18.0.2
    start a 198.18.0.1
    start b 198.18.0.2 198.18.0.1
    wait_address a; wait_address b
    ;;
  line)
    host a; host b; host c
    link a a0 198.18.1.1 b b0 198.18.1.2
    link b b1 198.18.2.2 c c0 198.18.2.3
    # b is one address, 198.18.1.2, for both sides: c reaches it through a host route
    # to b (delivered locally at b: b forwards nothing, so a and c cannot reach each other).
    ip netns exec "$prefix-c" ip route add 198.18.1.2/32 via 198.18.2.2
    echo "route add 198.18.1.2/32 via 198.18.2.2" > "$dir/c.routes"  # heal puts it back
    start b 198.18.1.2
    start a 198.18.1.1 198.18.1.2
    start c 198.18.2.3 198.18.1.2
    wait_address a; wait_address b; wait_address c
    ;;
  star)
    [[ "$count" =~ ^[0-9]+$ ]] && [ "$count" -ge 2 ] && [ "$count" -le 50 ] || die "star size '$count': use 2 to 50"
    ns="$prefix-sw"
    ip netns add "$ns"
    ip netns exec "$ns" ip link add br0 type bridge
    ip netns exec "$ns" ip link set br0 up
    for i in $(seq 1 "$count"); do
      host "h$i"
      ip link add "${prefix}h$i" netns "$prefix-h$i" type veth peer name "${prefix}p$i" netns "$ns"
      ip netns exec "$prefix-h$i" ip addr add "198.18.3.$i/24" dev "${prefix}h$i"
      ip netns exec "$prefix-h$i" ip link set "${prefix}h$i" up
      ip netns exec "$ns" ip link set "${prefix}p$i" master br0
      ip netns exec "$ns" ip link set "${prefix}p$i" up
    done
    start h1 198.18.3.1
    for i in $(seq 2 "$count"); do start "h$i" "198.18.3.$i" 198.18.3.1; done
    for i in $(seq 1 "$count"); do wait_address "h$i"; done
    ;;
  *) die "unknown shape '$shape': use pair, line or star" ;;
esac
trap - EXIT
"$0" info "$prefix"
