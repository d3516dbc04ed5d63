#!/bin/sh
# Writes this pod's configuration into $CONFIG_DIR before Redis or Sentinel starts. The
# init container of each StatefulSet runs it (`sh configure.sh redis|sentinel`);
# tests/test_deploy_overlays.py runs it against real redis-server and redis-sentinel.
#
#   redis     $CONFIG_DIR/redis.conf: $TEMPLATE_DIR/redis.conf, this server's port,
#             data directory ($DATA_DIR) and announced address, the password, and
#             `replicaof <primary>` unless this server is the primary
#   sentinel  $CONFIG_DIR/sentinel.conf: this sentinel's port and announced address,
#             the passwords, `sentinel monitor` of the primary, then
#             $TEMPLATE_DIR/sentinel.conf
#
# The primary is, first found: the one a sentinel names (after a failover that is not
# the first server: a server that comes back follows the new primary instead of taking
# the role back, and a sentinel that restarts watches the right one); else a Redis
# server that says it is a primary (every sentinel restarted at once); else the first of
# REDIS_NODES (a new installation).
#
# Environment (the StatefulSets set it): ANNOUNCE, this pod's host:port; REDIS_NODES and
# SENTINEL_NODES, every server's and sentinel's host:port, space-separated; MASTER_NAME;
# QUORUM; REDIS_PASSWORD and SENTINEL_PASSWORD; CONFIG_DIR; TEMPLATE_DIR; DATA_DIR (redis).
set -eu

mode=${1:-}
case $mode in
  redis) : "${DATA_DIR:?}" ;;
  sentinel) ;;
  *)
    echo "usage: configure.sh redis|sentinel" >&2
    exit 2
    ;;
esac
: "${ANNOUNCE:?}" "${REDIS_NODES:?}" "${SENTINEL_NODES:?}" "${MASTER_NAME:?}"
: "${REDIS_PASSWORD:?}" "${SENTINEL_PASSWORD:?}" "${CONFIG_DIR:?}" "${TEMPLATE_DIR:?}"
QUORUM=${QUORUM:-2}

host() { echo "${1%:*}"; }
port() { echo "${1##*:}"; }

# Written into the configuration between double quotes: nothing there may end them.
for secret in "$REDIS_PASSWORD" "$SENTINEL_PASSWORD"; do
  case $secret in
    *[!A-Za-z0-9._~+/=-]*)
      echo "configure.sh: a password may hold only A-Z a-z 0-9 . _ ~ + / = -" >&2
      exit 1
      ;;
  esac
done

# ask PASSWORD HOST:PORT COMMAND...: the answer, or nothing (no answer within 2 s, an error)
ask() {
  password=$1 node=$2
  shift 2
  REDISCLI_AUTH=$password timeout 2 redis-cli -e -h "$(host "$node")" -p "$(port "$node")" \
    "$@" 2>/dev/null || true
}

primary=
for node in $SENTINEL_NODES; do
  [ "$node" = "$ANNOUNCE" ] && continue
  # shellcheck disable=SC2046 # two words: host and port
  set -- $(ask "$SENTINEL_PASSWORD" "$node" SENTINEL get-master-addr-by-name "$MASTER_NAME")
  if [ $# -eq 2 ]; then
    primary=$1:$2
    echo "configure.sh: sentinel $node names the primary: $primary"
    break
  fi
done
if [ -z "$primary" ]; then
  for node in $REDIS_NODES; do
    [ "$node" = "$ANNOUNCE" ] && continue
    if [ "$(ask "$REDIS_PASSWORD" "$node" ROLE | head -n 1)" = master ]; then
      primary=$node
      echo "configure.sh: no sentinel answered; $node is a primary"
      break
    fi
  done
fi
if [ -z "$primary" ]; then
  for node in $REDIS_NODES; do
    primary=$node
    break
  done
  echo "configure.sh: no sentinel or primary answered; the first server is: $primary"
fi

umask 077
mkdir -p "$CONFIG_DIR"
case $mode in
  redis)
    {
      cat "$TEMPLATE_DIR/redis.conf"
      echo "port $(port "$ANNOUNCE")"
      echo "dir $DATA_DIR"
      echo "replica-announce-ip $(host "$ANNOUNCE")"
      echo "replica-announce-port $(port "$ANNOUNCE")"
      echo "requirepass \"$REDIS_PASSWORD\""
      echo "masterauth \"$REDIS_PASSWORD\""
      if [ "$primary" != "$ANNOUNCE" ]; then
        echo "replicaof $(host "$primary") $(port "$primary")"
      fi
    } >"$CONFIG_DIR/redis.conf"
    ;;
  sentinel)
    # It announces its pod's name, which outlives a restart: the others then take the
    # restarted sentinel (a new id) for the one they knew, not for one more voter.
    {
      echo "port $(port "$ANNOUNCE")"
      echo "dir $CONFIG_DIR"
      echo "sentinel resolve-hostnames yes"
      echo "sentinel announce-hostnames yes"
      echo "sentinel announce-ip $(host "$ANNOUNCE")"
      echo "sentinel announce-port $(port "$ANNOUNCE")"
      echo "requirepass \"$SENTINEL_PASSWORD\""
      echo "sentinel sentinel-pass \"$SENTINEL_PASSWORD\""
      echo "sentinel monitor $MASTER_NAME $(host "$primary") $(port "$primary") $QUORUM"
      echo "sentinel auth-pass $MASTER_NAME \"$REDIS_PASSWORD\""
      cat "$TEMPLATE_DIR/sentinel.conf"
    } >"$CONFIG_DIR/sentinel.conf"
    ;;
esac
