#!/usr/bin/env bash
# tests/slurm/local_slurm.sh — bring up a single-node SLURM cluster (with accounting,
# so `sacct` works) on a Debian 12 machine where we are root and there is no
# systemd, for rlkit's SLURM tests (pytest -m slurm). Idempotent: re-running it
# while the cluster is up is a no-op. From ../shared/notes/local-slurm.md (verified
# there: ~23 s from nothing, ~9 s with the packages installed, 0.25 s when up).
#
#   bash tests/slurm/local_slurm.sh          # install (if needed) + configure + start
#   bash tests/slurm/local_slurm.sh stop     # stop the daemons it started (by PID file)
#   bash tests/slurm/local_slurm.sh status
#
# Env knobs:
#   LOCAL_SLURM_STATE   state/log/pid dir (default /tmp/local-slurm)
#   LOCAL_SLURM_PART    partition name     (default debug)
#   LOCAL_SLURM_NODES   number of nodes (default 2): slurmd's on this one machine, each
#                       started with `slurmd -N <name>` on its own port (node 1 is
#                       `hostname -s`, node k is `<hostname>-k`; all on 127.0.0.1, so
#                       multi-node jobs run here: rlkit's 2-node tests need 2)
#   LOCAL_SLURM_ACCT    1 = slurmdbd+MariaDB accounting (default), 0 = none
#                       (without accounting `sacct` fails, and submitit then
#                        cannot see CANCELLED/FAILED states: result() of a
#                        cancelled job blocks forever)
set -euo pipefail

STATE=${LOCAL_SLURM_STATE:-/tmp/local-slurm}
PART=${LOCAL_SLURM_PART:-debug}
ACCT=${LOCAL_SLURM_ACCT:-1}
NODES=${LOCAL_SLURM_NODES:-2}
CONF=/etc/slurm/slurm.conf
DBDCONF=/etc/slurm/slurmdbd.conf
MUNGE_PID=/run/munge/munged.pid
MYSQL_PID=$STATE/mysqlrun/mariadb.pid
DBD_PID=$STATE/slurmdbd.pid
CTLD_PID=$STATE/slurmctld.pid
H=$(hostname -s)
node_name() { if (( $1 == 1 )); then echo "$H"; else echo "$H-$1"; fi; }
slurmd_pid() { echo "$STATE/slurmd-$1.pid"; }   # slurm.conf: SlurmdPidFile=$STATE/slurmd-%n.pid

log() { echo "[local-slurm] $*" >&2; }

# true if the pid file exists and names a live process whose command is $2
alive() {
  local pidf=$1 name=$2 pid
  [[ -s $pidf ]] || return 1
  pid=$(cat "$pidf")
  kill -0 "$pid" 2>/dev/null || return 1
  [[ "$(cat /proc/"$pid"/comm 2>/dev/null)" == "$name"* ]]
}

wait_for() {  # wait_for SECONDS DESCRIPTION CMD...
  local t=$1 what=$2; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS >= end )); then log "timeout waiting for $what"; return 1; fi
    sleep 0.5
  done
}

stop_one() {  # stop_one PIDFILE NAME
  local pidf=$1 name=$2 pid
  if alive "$pidf" "$name"; then
    pid=$(cat "$pidf")
    log "stopping $name (pid $pid)"
    kill "$pid"
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && { log "$name did not exit, SIGKILL"; kill -9 "$pid" || true; }
  fi
  rm -f "$pidf"
}

stop_slurmds() {  # every slurmd this script started (slurmd.pid: a single-node cluster of an older version)
  local f
  for f in "$STATE"/slurmd.pid "$STATE"/slurmd-*.pid; do [[ -e $f ]] && stop_one "$f" slurmd; done
  return 0
}

case ${1:-start} in
  stop)
    stop_slurmds
    stop_one "$CTLD_PID" slurmctld
    stop_one "$DBD_PID" slurmdbd
    stop_one "$MYSQL_PID" mariadbd
    stop_one "$MUNGE_PID" munged
    exit 0 ;;
  status)
    for p in "$MUNGE_PID:munged" "$MYSQL_PID:mariadbd" "$DBD_PID:slurmdbd" "$CTLD_PID:slurmctld" "$STATE"/slurmd-*.pid; do
      [[ $p == *.pid ]] && p="$p:slurmd"
      label=${p##*:}; [[ $p == */slurmd-* ]] && label="slurmd $(basename "${p%%:*}" .pid | cut -d- -f2-)"
      if alive "${p%%:*}" "${p##*:}"; then echo "$label: running (pid $(cat "${p%%:*}"))"; else echo "$label: stopped"; fi
    done
    sinfo 2>/dev/null || true
    exit 0 ;;
  start) ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac

# ---------------------------------------------------------------- install ---
pkgs=(slurmctld slurmd slurm-client munge)
[[ $ACCT == 1 ]] && pkgs+=(slurmdbd mariadb-server)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if (( ${#missing[@]} )); then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # no systemd here; the package postinsts try to start services and are
  # refused by policy-rc.d (harmless) -- we start the daemons ourselves below.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$STATE"/{ctld,spool,log}

# ------------------------------------------------------------------ munge ---
if [[ ! -s /etc/munge/munge.key ]]; then
  log "creating munge key"
  install -d -o munge -g munge -m 700 /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 755 /run/munge
if ! alive "$MUNGE_PID" munged; then
  log "starting munged"
  rm -f /run/munge/munge.socket.2.lock
  runuser -u munge -- /usr/sbin/munged
  wait_for 20 munged bash -c 'munge -n | unmunge'
fi

# ---------------------------------------------------------------- config ----
read -r CPUS SOCKETS CORES THREADS MEM < <(slurmd -C | head -1 | sed -E \
  's/.*CPUs=([0-9]+).*SocketsPerBoard=([0-9]+).*CoresPerSocket=([0-9]+).*ThreadsPerCore=([0-9]+).*RealMemory=([0-9]+).*/\1 \2 \3 \4 \5/')
MEM=$(( MEM * 85 / 100 ))          # leave headroom; RealMemory must be <= detected
MEM=$(( MEM / NODES ))             # the nodes share this machine's memory (each gets every core)
DEFMEM=$(( MEM / CPUS ))           # default per-CPU memory for jobs without --mem
NODE_LINES=""
for (( k = 1; k <= NODES; k++ )); do  # one slurmd per node, each on its own port, all on loopback
  NODE_LINES+="NodeName=$(node_name "$k") NodeAddr=127.0.0.1 Port=$(( 6808 + 10 * k )) CPUs=$CPUS Sockets=$SOCKETS CoresPerSocket=$CORES ThreadsPerCore=$THREADS RealMemory=$MEM State=UNKNOWN
"
done
NODE_LIST=$(for (( k = 1; k <= NODES; k++ )); do node_name "$k"; done | paste -sd,)

if [[ $ACCT == 1 ]]; then
  ACCT_LINES="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost"
else
  ACCT_LINES="AccountingStorageType=accounting_storage/none"
fi

mkdir -p /etc/slurm
cat > "$CONF.new" <<EOF
# generated by tests/slurm/local_slurm.sh -- $NODES node(s) on this machine, no cgroups, no systemd
ClusterName=localcluster
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
$ACCT_LINES
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEFMEM
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MinJobAge=300
KillWait=5
InactiveLimit=0
Waittime=0
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$STATE/slurmd-%n.pid
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool/%n
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
${NODE_LINES%$'\n'}
PartitionName=$PART Nodes=$NODE_LIST Default=YES MaxTime=INFINITE State=UP
EOF
conf_changed=0
cmp -s "$CONF.new" "$CONF" || conf_changed=1
mv "$CONF.new" "$CONF"

# ------------------------------------------------- accounting (optional) ----
if [[ $ACCT == 1 ]]; then
  install -d -o mysql -g mysql "$STATE/mysql" "$STATE/mysqlrun" /run/mysqld
  if [[ ! -d $STATE/mysql/mysql ]]; then
    log "initialising MariaDB datadir"
    mariadb-install-db --user=mysql --datadir="$STATE/mysql" --skip-test-db \
      --auth-root-authentication-method=socket >"$STATE/log/mariadb-install.log" 2>&1
  fi
  if ! alive "$MYSQL_PID" mariadbd; then
    log "starting mariadbd"
    # unix socket only (default client path), root authenticates via unix_socket
    nohup mariadbd --user=mysql --datadir="$STATE/mysql" --socket=/run/mysqld/mysqld.sock \
      --pid-file="$MYSQL_PID" --log-error="$STATE/mysqlrun/mariadb.err" --skip-networking \
      --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 >/dev/null 2>&1 &
    wait_for 60 mariadbd mariadb -e 'select 1'
  fi
  cat > "$DBDCONF" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
PidFile=$DBD_PID
LogFile=$STATE/log/slurmdbd.log
DebugLevel=info
EOF
  chmod 600 "$DBDCONF"
  if ! alive "$DBD_PID" slurmdbd; then
    log "starting slurmdbd"
    /usr/sbin/slurmdbd
    wait_for 60 slurmdbd sacctmgr -n list cluster
  fi
fi

# ------------------------------------------------------- slurmctld/slurmd ---
if alive "$CTLD_PID" slurmctld && (( conf_changed )); then
  log "slurm.conf changed, restarting slurmctld/slurmd"
  stop_slurmds
  stop_one "$CTLD_PID" slurmctld
fi
if ! alive "$CTLD_PID" slurmctld; then
  log "starting slurmctld"
  /usr/sbin/slurmctld
  wait_for 30 slurmctld scontrol ping
fi
for (( k = 1; k <= NODES; k++ )); do
  n=$(node_name "$k")
  mkdir -p "$STATE/spool/$n"
  if ! alive "$(slurmd_pid "$n")" slurmd; then
    log "starting slurmd for node $n"
    /usr/sbin/slurmd -N "$n"
  fi
done

node_idle() { [[ $(sinfo -h -n "$1" -o '%t') =~ ^(idle|mix|alloc)$ ]]; }
for (( k = 1; k <= NODES; k++ )); do
  n=$(node_name "$k")
  if ! wait_for 30 "node $n idle" node_idle "$n"; then
    # a node left DOWN/DRAIN by an earlier unclean stop: resume it once
    scontrol update nodename="$n" state=resume || true
    wait_for 30 "node $n idle" node_idle "$n" || { sinfo; tail -20 "$STATE"/log/*.log; exit 1; }
  fi
done
sinfo
log "cluster up (state in $STATE, config $CONF)"
