#!/usr/bin/env bash
# A single-node SLURM cluster on localhost for the suite's submitit_slurm test (docs/cluster.md):
#   .ci/cluster.sh up       install slurm-wlm, munge, slurmdbd and MariaDB when missing, start them, wait for the node
#   .ci/cluster.sh down     stop every daemon `up` started (jobs first); nothing stays running
#   .ci/cluster.sh status   sinfo, squeue and the daemons' pids
# CPU-only partition `cpu` sized from `slurmd -C`; no systemd or cgroups needed. Accounting goes through slurmdbd to a
# local MariaDB so `sacct` (which submitit polls) reports the jobs. State and logs: $I2AM_SLURM_DIR.
set -euo pipefail
die() { echo "cluster: $*" >&2; exit 1; }
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || die "needs root: run it as root (no sudo here)"
  exec sudo -E bash "$0" "$@"
fi

DIR=${I2AM_SLURM_DIR:-/var/lib/i2am-slurm}
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
MARK="# written by i2am .ci/cluster.sh"
WAIT_S=${I2AM_SLURM_WAIT_S:-60}
HOST=$(hostname -s)
SOCKET=$DIR/mysql/mariadb.sock   # our own MariaDB's, apart from any system one at /run/mysqld

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
wait_for() {  # wait_for <what> <command...>: poll for up to WAIT_S seconds, then fail with its last answer
  local what=$1 answer; shift
  for _ in $(seq "$WAIT_S"); do answer=$("$@" 2>&1) && return 0; sleep 1; done
  die "$what not ready after ${WAIT_S} s (${answer:-no answer}); logs in $DIR"
}
node_idle() {  # busy counts too: `up` while jobs run is fine
  local state; state=$(sinfo -h -N -o %T)
  case $state in idle | mixed | allocated) ;; *) echo "node state: ${state:-none}"; return 1 ;; esac
}
own_or_absent() {  # never overwrite a configuration this script did not write
  [ ! -e "$1" ] || head -1 "$1" | grep -qxF "$MARK" || die "$1 exists and was not written by this script; move it away"
}

install() {
  command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null && command -v mariadbd >/dev/null && return
  command -v apt-get >/dev/null || die "no apt-get: install SLURM (slurmctld, slurmd, slurmdbd), munge and MariaDB"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm slurmdbd munge mariadb-server
}

write_configs() {
  own_or_absent "$CONF"
  own_or_absent "$DBD_CONF"
  local node
  node=$(slurmd -C | head -1 | sed "s/^NodeName=[^ ]*/NodeName=$HOST NodeAddr=127.0.0.1/")
  cat > "$CONF" <<EOF
$MARK
ClusterName=i2am
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
$node
PartitionName=cpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat > "$DBD_CONF" <<EOF
$MARK
AuthType=auth/munge
DbdHost=$HOST
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$DIR/slurmdbd.pid
LogFile=$DIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=i2am_slurm_acct
StorageUser=root
EOF
  chmod 600 "$DBD_CONF"
}

up() {
  install
  mkdir -p "$DIR"/ctld "$DIR"/d "$DIR"/mysql /run/munge
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile /etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key /run/munge && chmod 600 /etc/munge/munge.key
  alive /run/munge/munged.pid || runuser -u munge -- munged
  wait_for munged munge -n

  chown mysql:mysql "$DIR"/mysql
  if ! alive "$DIR"/mysql/mariadb.pid; then   # no TCP; root logs in through the socket (as slurmdbd does)
    [ -d "$DIR"/mysql/mysql ] || mariadb-install-db --user=mysql --datadir="$DIR"/mysql >"$DIR"/mysql-install.log 2>&1 \
      || die "mariadb-install-db failed: $DIR/mysql-install.log"
    setsid mariadbd --user=mysql --datadir="$DIR"/mysql --socket="$SOCKET" --skip-networking \
      --pid-file="$DIR"/mysql/mariadb.pid --log-error="$DIR"/mysql/mariadb.log \
      --innodb-buffer-pool-size=1G --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1 &
  fi
  wait_for MariaDB mariadb --socket="$SOCKET" -e "select 1"

  alive "$DIR"/slurmctld.pid || alive "$DIR"/slurmdbd.pid || write_configs
  alive "$DIR"/slurmdbd.pid || MYSQL_UNIX_PORT=$SOCKET slurmdbd   # its MySQL client library reads the variable
  wait_for slurmdbd sacctmgr -i list cluster
  alive "$DIR"/slurmctld.pid || slurmctld
  alive "$DIR"/slurmd.pid || slurmd
  wait_for "the node (sinfo shows it idle)" node_idle
  sinfo
}

stop() {  # stop <pidfile> [command that asks it to stop]: then wait for the process to go
  local pidfile=$1 pid; shift
  alive "$pidfile" || return 0
  pid=$(cat "$pidfile")
  if [ $# -gt 0 ]; then "$@" || kill "$pid"; else kill "$pid"; fi
  for _ in $(seq "$WAIT_S"); do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
  die "pid $pid ($pidfile) still running after ${WAIT_S} s"
}

down() {
  if alive "$DIR"/slurmctld.pid; then
    squeue -h -o %A | xargs -r scancel
    for _ in $(seq "$WAIT_S"); do [ -z "$(squeue -h -o %A)" ] && break; sleep 1; done
  fi
  stop "$DIR"/slurmd.pid
  stop "$DIR"/slurmctld.pid
  stop "$DIR"/slurmdbd.pid
  stop "$DIR"/mysql/mariadb.pid
  stop /run/munge/munged.pid munged --stop
  echo "cluster: down"
}

status() {
  for pidfile in /run/munge/munged.pid "$DIR"/mysql/mariadb.pid "$DIR"/slurmdbd.pid "$DIR"/slurmctld.pid \
    "$DIR"/slurmd.pid; do
    if alive "$pidfile"; then echo "$pidfile: running (pid $(cat "$pidfile"))"; else echo "$pidfile: stopped"; fi
  done
  sinfo && squeue
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) die "usage: $0 up|down|status" ;;
esac
