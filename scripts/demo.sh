#!/usr/bin/env bash
# shimkeeper demo: a container survives a daemon restart.
#
# Starts a private containerd (ours by default) in a fresh temp dir, runs a
# toybox container with runc, restarts the daemon, checks that the same task is
# still RUNNING with the same PID, execs into it, then tears everything down and
# checks that nothing was left behind (processes, mounts, cgroups, temp dir).
#
# Usage (as root, from anywhere; `make demo` builds first):
#   scripts/demo.sh
#   DAEMON=bin/containerd-stock scripts/demo.sh     # same demo, stock daemon
#
# Environment:
#   DAEMON          daemon binary (default <repo>/bin/containerd). A relative
#                   path is taken from the current dir, else from the repo.
#   NS              containerd namespace (default "demo")
#   CONFIG_VERSION  3 (default: top-level [grpc]/[ttrpc]/[debug] sections, which
#                   the daemon migrates) or 4 (server plugin sections)
#   LOG_LEVEL       daemon log level (default "info")
#   DEMO_LOG        if set, the daemon log is copied there on exit
#   DEMO_FAIL_AT    test hook: fail at the start of step N, to exercise cleanup
#
# Needs <repo>/bin/{ctr,containerd-shim-runc-v2,runc,toybox} (`make tools`).
# Nothing outside the temp dir is used except the cgroup dirs runc creates
# (/sys/fs/cgroup/*/$NS/<id>), which are removed again; the runc state root and
# the client FIFO dir are put in the temp dir, away from /run/containerd.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$REPO/bin
NS=${NS:-demo}
CONFIG_VERSION=${CONFIG_VERSION:-3}
LOG_LEVEL=${LOG_LEVEL:-info}
ID=demo1

DAEMON=${DAEMON:-$BIN/containerd}
if [[ $DAEMON != /* ]]; then
	if [[ -e $DAEMON ]]; then
		DAEMON=$(pwd)/$DAEMON
	else
		DAEMON=$REPO/$DAEMON
	fi
fi

step_no=0
step() {
	step_no=$((step_no + 1))
	printf '\n\033[1m== %d. %s\033[0m\n' "$step_no" "$*"
	if [[ ${DEMO_FAIL_AT:-} == "$step_no" ]]; then
		die "injected failure at step $step_no (DEMO_FAIL_AT)"
	fi
}
info() { printf '   %s\n' "$*"; }
die() {
	printf '\n\033[1;31mDEMO FAILED: %s\033[0m\n' "$*" >&2
	exit 1
}

# --- preflight -------------------------------------------------------------

[[ $(id -u) -eq 0 ]] || die "must run as root (runc needs it)"
for b in "$DAEMON" "$BIN/ctr" "$BIN/containerd-shim-runc-v2" "$BIN/runc" "$BIN/toybox"; do
	[[ -x $b ]] || die "$b not found; run 'make build' (or 'make tools' for DAEMON=bin/containerd-stock)"
done
[[ $CONFIG_VERSION == 3 || $CONFIG_VERSION == 4 ]] || die "CONFIG_VERSION must be 3 or 4"

# The shim socket dir must be at most 42 characters, so keep the path short.
TMP=$(mktemp -d /tmp/skd.XXXXXX)
ADDR=$TMP/c.sock
SOCKDIR=$TMP/s
RUNC_ROOT=$TMP/runc
FIFO_DIR=$TMP/fifo
LOG=$TMP/containerd.log
DAEMON_PID=
DONE=

export PATH="$BIN:$PATH"
# ctr repeats the daemon's deprecation warnings (cgroup v1) on every call.
export CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS=${CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS:-1}

ctr() { "$BIN/ctr" --address "$ADDR" --namespace "$NS" "$@"; }

# Processes whose command line mentions our temp dir: the daemon and the shims
# (shims get "-address $TMP/c.sock").
procs_in_tmp() {
	local p
	for p in /proc/[0-9]*; do
		[[ ${p#/proc/} == "$$" ]] && continue
		if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$TMP/"; then
			echo "${p#/proc/}"
		fi
	done
}

mounts_in_tmp() {
	awk -v t="$TMP" '$5 == t || index($5, t "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

# cgroup dirs for $NS that exist before we start; we only remove ones we made.
cgroup_dirs() {
	local d
	for d in /sys/fs/cgroup/"$NS" /sys/fs/cgroup/*/"$NS"; do
		[[ -d $d ]] && echo "$d"
	done
	return 0
}
CGROUPS_BEFORE=$(cgroup_dirs)

alive() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; }

wait_gone() { # pid timeout_seconds
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		alive "$1" || return 0
		sleep 0.1
	done
	return 1
}

stop_daemon() {
	alive "$DAEMON_PID" || { DAEMON_PID=; return 0; }
	kill -TERM "$DAEMON_PID"
	if ! wait_gone "$DAEMON_PID" 15; then
		info "daemon $DAEMON_PID did not exit after SIGTERM; sending SIGKILL"
		kill -KILL "$DAEMON_PID" 2>/dev/null || true
		wait_gone "$DAEMON_PID" 5 || true
	fi
	wait "$DAEMON_PID" 2>/dev/null || true
	DAEMON_PID=
}

cleanup() {
	local rc=$? pid m d leaks=
	trap - EXIT INT TERM
	set +e
	if [[ -z $DONE ]]; then
		printf '\n\033[1m== cleanup after failure (exit status %d)\033[0m\n' "$rc"
		if [[ -f $LOG ]]; then
			echo "---- last 40 lines of $LOG ----"
			tail -n 40 "$LOG"
			echo "----"
		fi
		# Best effort through the daemon first, so it removes its own state.
		if alive "$DAEMON_PID"; then
			timeout 10 "$BIN/ctr" --address "$ADDR" --namespace "$NS" task kill -s KILL "$ID" >/dev/null 2>&1
			sleep 0.5
			timeout 10 "$BIN/ctr" --address "$ADDR" --namespace "$NS" task delete -f "$ID" >/dev/null 2>&1
			timeout 10 "$BIN/ctr" --address "$ADDR" --namespace "$NS" container delete "$ID" >/dev/null 2>&1
		fi
	else
		printf '\n\033[1m== cleanup\033[0m\n'
	fi
	stop_daemon
	# Containers still known to runc (their init is not a shim child any
	# more once the shim is gone): kill and delete them, which also removes
	# their cgroups.
	if [[ -d $RUNC_ROOT/$NS ]]; then
		for d in $("$BIN/runc" --root "$RUNC_ROOT/$NS" list -q 2>/dev/null); do
			info "runc delete --force $d"
			"$BIN/runc" --root "$RUNC_ROOT/$NS" delete --force "$d"
		done
	fi
	for pid in $(procs_in_tmp); do
		info "killing leftover process $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
		kill -KILL "$pid" 2>/dev/null
	done
	for pid in $(procs_in_tmp); do wait_gone "$pid" 5; done
	for m in $(mounts_in_tmp); do
		info "unmounting $m"
		umount "$m" 2>/dev/null || umount -l "$m"
	done
	for d in $(cgroup_dirs); do
		if ! grep -qxF "$d" <<<"$CGROUPS_BEFORE"; then
			find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
		fi
	done
	if [[ -n ${DEMO_LOG:-} && -f $LOG ]]; then
		cp "$LOG" "$DEMO_LOG" && info "daemon log copied to $DEMO_LOG"
	fi
	# Leak check: this is part of the demo's contract.
	[[ -n $(procs_in_tmp) ]] && leaks+=" processes:$(procs_in_tmp | tr '\n' ' ')"
	[[ -n $(mounts_in_tmp) ]] && leaks+=" mounts:$(mounts_in_tmp | tr '\n' ' ')"
	rm -rf "$TMP"
	[[ -e $TMP ]] && leaks+=" tempdir:$TMP"
	for d in $(cgroup_dirs); do
		grep -qxF "$d" <<<"$CGROUPS_BEFORE" || leaks+=" cgroup:$d"
	done
	if [[ -n $leaks ]]; then
		printf '\033[1;31mLEFT BEHIND:%s\033[0m\n' "$leaks" >&2
		[[ $rc -eq 0 ]] && rc=1
	else
		info "nothing left behind (no processes, mounts, cgroups or $TMP)"
	fi
	if [[ $rc -eq 0 ]]; then
		printf '\n\033[1;32mDEMO PASSED\033[0m\n'
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_daemon() {
	# setsid: own session, so a Ctrl-C on the terminal doesn't reach the
	# daemon. The script has no job control, so the background job is not a
	# process group leader and setsid execs in place: $! is the daemon.
	setsid "$DAEMON" --config "$TMP/config.toml" >>"$LOG" 2>&1 </dev/null &
	DAEMON_PID=$!
	local i
	for ((i = 0; i < 300; i++)); do
		alive "$DAEMON_PID" || die "daemon exited during startup (see log above)"
		if [[ -S $ADDR ]] && timeout 5 "$BIN/ctr" --address "$ADDR" version >/dev/null 2>&1; then
			[[ $(readlink "/proc/$DAEMON_PID/exe") == "$(readlink -f "$DAEMON")" ]] ||
				die "pid $DAEMON_PID is not $DAEMON"
			info "daemon pid $DAEMON_PID answers on $ADDR (after ~$((i / 10)).$((i % 10))s)"
			return 0
		fi
		sleep 0.1
	done
	die "daemon did not answer 'ctr version' within 30s"
}

# "PID STATUS" of task $ID from `ctr task ls`, or nothing.
task_line() {
	ctr task ls | awk -v id="$ID" '$1 == id { print $2, $3 }'
}

shim_pid() {
	local p
	for p in $(procs_in_tmp); do
		if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "containerd-shim"; then
			echo "$p"
		fi
	done
}

# --- 1. config ------------------------------------------------------------
step "Writing config (version $CONFIG_VERSION) in $TMP"
mkdir -p "$TMP"/{root,state,tmp,opt,image-verifier} "$FIFO_DIR"
{
	cat <<EOF
version = $CONFIG_VERSION
root = "$TMP/root"
state = "$TMP/state"
temp = "$TMP/tmp"
imports = []
# No CRI (needs CNI), no NRI (its socket lives in /var/run/nri).
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.cri.v1.images",
  "io.containerd.cri.v1.runtime",
  "io.containerd.nri.v1.nri",
]

[debug]
  level = "$LOG_LEVEL"
EOF
	if [[ $CONFIG_VERSION == 3 ]]; then
		cat <<EOF
  address = "$TMP/d.sock"

[grpc]
  address = "$ADDR"

[ttrpc]
  address = "$ADDR.ttrpc"

[metrics]
  address = ""
EOF
	else
		cat <<EOF

[plugins."io.containerd.server.v1.grpc"]
  address = "$ADDR"

[plugins."io.containerd.server.v1.ttrpc"]
  address = "$ADDR.ttrpc"

[plugins."io.containerd.server.v1.debug"]
  address = "$TMP/d.sock"

[plugins."io.containerd.server.v1.metrics"]
  address = ""
EOF
	fi
	cat <<EOF

[plugins."io.containerd.shim.v1.manager"]
  socket_dir = "$SOCKDIR"

# Keep the defaults under /opt/containerd out of the picture.
[plugins."io.containerd.internal.v1.opt"]
  path = "$TMP/opt"

[plugins."io.containerd.image-verifier.v1.bindir"]
  bin_dir = "$TMP/image-verifier"
EOF
} >"$TMP/config.toml"
info "daemon:     $DAEMON"
info "address:    $ADDR"
info "socket_dir: $SOCKDIR (${#SOCKDIR} chars, limit 42)"
((${#SOCKDIR} <= 42)) || die "socket dir path too long"

# --- 2. start -------------------------------------------------------------
step "Starting the daemon"
start_daemon
ctr version | sed 's/^/   /'

# --- 3. rootfs ------------------------------------------------------------
step "Building a toybox rootfs"
TOYBOX=$BIN/toybox "$REPO/scripts/mkrootfs.sh" "$TMP/rootfs"
info "$TMP/rootfs/bin: $(ls "$TMP/rootfs/bin" | tr '\n' ' ')"

# --- 4. run ---------------------------------------------------------------
step "Running container $ID: /bin/sleep 3600"
ctr run -d --rootfs "$TMP/rootfs" --runc-root "$RUNC_ROOT" \
	--log-uri "file://$TMP/$ID.log" "$ID" /bin/sleep 3600
ctr task ls | sed 's/^/   /'
read -r PID1 STATUS1 <<<"$(task_line)"
[[ ${STATUS1:-} == RUNNING ]] || die "task $ID is not RUNNING after run (status '${STATUS1:-none}')"
alive "$PID1" || die "task pid $PID1 is not alive"
SHIM1=$(shim_pid)
info "task pid $PID1, shim pid ${SHIM1:-?}"

# --- 5. restart -----------------------------------------------------------
step "Restarting the daemon (SIGTERM, wait, start)"
OLD=$DAEMON_PID
stop_daemon
info "daemon $OLD exited"
alive "$PID1" || die "task pid $PID1 died with the daemon"
[[ -z $SHIM1 ]] || alive "$SHIM1" || die "shim $SHIM1 died with the daemon"
info "task pid $PID1 and shim ${SHIM1:-?} still alive while the daemon is down"
start_daemon

# --- 6. check -------------------------------------------------------------
step "Checking the task after the restart"
ctr task ls | sed 's/^/   /'
read -r PID2 STATUS2 <<<"$(task_line)"
if [[ ${STATUS2:-} != RUNNING || ${PID2:-} != "$PID1" ]]; then
	die "expected $ID RUNNING with pid $PID1 after restart, got '${STATUS2:-none}' pid '${PID2:-none}'"
fi
info "OK: $ID still RUNNING with pid $PID2"
# What recovery did, as an operator reads it (shimkeeper only: stock has no
# such command). The report is written once the background work ends.
if "$DAEMON" recovery --help >/dev/null 2>&1; then
	for _ in $(seq 50); do
		"$DAEMON" --config "$TMP/config.toml" recovery report 2>/dev/null | grep -q "background finished" && break
		sleep 0.1
	done
	"$DAEMON" --config "$TMP/config.toml" recovery report 2>&1 | sed -n '1,6p' | sed 's/^/   /'
fi

# --- 7. exec --------------------------------------------------------------
step "Exec into the recovered task"
OUT=$(ctr task exec --exec-id e1 --fifo-dir "$FIFO_DIR" "$ID" /bin/echo hello-from-exec)
info "output: $OUT"
[[ $OUT == hello-from-exec ]] || die "unexpected exec output '$OUT'"

# --- 8. teardown ----------------------------------------------------------
step "Stopping the task and deleting the container"
ctr task kill "$ID"
for ((i = 0; i < 100; i++)); do
	read -r _ st <<<"$(task_line)"
	[[ ${st:-} == STOPPED ]] && break
	sleep 0.1
done
[[ ${st:-} == STOPPED ]] || die "task did not stop after SIGTERM (status '${st:-none}')"
ctr task ls | sed 's/^/   /'
ctr task delete "$ID" 2>&1 | sed 's/^/   /' # prints the exit code: 143 = SIGTERM
ctr container delete "$ID"
info "task and container deleted"
wait_gone "$PID1" 5 || die "task pid $PID1 still alive after delete"
if [[ -n $SHIM1 ]] && ! wait_gone "$SHIM1" 10; then
	die "shim $SHIM1 still alive after task delete"
fi

step "Stopping the daemon"
stop_daemon
info "daemon stopped"
DONE=1
