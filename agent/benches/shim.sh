#!/usr/bin/env bash
# Shim benchmark: pgbench -S (select-only) directly against PostgreSQL, through the dbward
# shim (allow-all gate, agent/examples/shim_standalone.rs) and through PgBouncer (session
# mode); prints TPS, p50/p99 latency and the ratios. One run; everything on loopback.
#
#   agent/benches/shim.sh                 # 30 s per target, 8 clients
#   DURATION=60 CLIENTS=8 agent/benches/shim.sh
#
# Needs: PostgreSQL 15 binaries in /usr/lib/postgresql/15/bin, pgbouncer, root (servers run
# as the postgres user). `cargo xtask bench shim` is meant to run this script.
set -euo pipefail

DURATION=${DURATION:-30}
CLIENTS=${CLIENTS:-8}
THREADS=${THREADS:-2}
SCALE=${SCALE:-10}
PGBIN=/usr/lib/postgresql/15/bin
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "building the shim (release)..." >&2
cargo build --quiet --release --manifest-path "$ROOT/Cargo.toml" -p dbward-agent --example shim_standalone
SHIM_BIN="$ROOT/target/release/examples/shim_standalone"

WORK=$(mktemp -d /tmp/dbward-bench-XXXXXX)
chown postgres:postgres "$WORK"
chmod 0755 "$WORK"
PG_PORT=$(free_port); SHIM_PORT=$(free_port); BOUNCER_PORT=$(free_port)
SHIM_PID=""; BOUNCER_PID=""
cleanup() {
  [ -n "$SHIM_PID" ] && kill "$SHIM_PID" 2>/dev/null || true
  [ -n "$BOUNCER_PID" ] && kill "$BOUNCER_PID" 2>/dev/null || true
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

runuser -u postgres -- "$PGBIN/initdb" -U postgres -A trust --no-sync -D "$WORK/data" >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -w -D "$WORK/data" -l "$WORK/pg.log" \
  -o "-p $PG_PORT -k $WORK -c listen_addresses=127.0.0.1 -c max_connections=100 -c shared_buffers=128MB" start >/dev/null
"$PGBIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -q -s "$SCALE" postgres >/dev/null 2>&1

"$SHIM_BIN" "127.0.0.1:$SHIM_PORT" "127.0.0.1:$PG_PORT" &
SHIM_PID=$!

cat > "$WORK/pgbouncer.ini" <<INI
[databases]
postgres = host=127.0.0.1 port=$PG_PORT dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 50
logfile = $WORK/pgbouncer.log
INI
echo '"postgres" ""' > "$WORK/userlist.txt"
chown postgres:postgres "$WORK/pgbouncer.ini" "$WORK/userlist.txt"
runuser -u postgres -- pgbouncer -q "$WORK/pgbouncer.ini" >/dev/null 2>&1 &
BOUNCER_PID=$!
sleep 1

# run NAME PORT → prints "NAME TPS P50_MS P99_MS"
run() {
  local name=$1 port=$2 dir="$WORK/log-$1"
  mkdir -p "$dir"
  (cd "$dir" && "$PGBIN/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n -S -c "$CLIENTS" -j "$THREADS" \
      -T "$DURATION" -l postgres > "$dir/out.txt" 2>&1)
  local tps n p50 p99
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$dir/out.txt" | head -1)
  cat "$dir"/pgbench_log.* | awk '{print $3}' | sort -n > "$dir/lat.txt"
  n=$(wc -l < "$dir/lat.txt")
  p50=$(awk -v n="$n" 'NR==int(n*0.50)+1 {printf "%.3f", $1/1000; exit}' "$dir/lat.txt")
  p99=$(awk -v n="$n" 'NR==int(n*0.99)+1 {printf "%.3f", $1/1000; exit}' "$dir/lat.txt")
  echo "$name $tps $p50 $p99"
}

echo "pgbench -S, $CLIENTS clients, $THREADS threads, ${DURATION}s per target, scale $SCALE" >&2
DIRECT=$(run direct "$PG_PORT")
SHIM=$(run shim "$SHIM_PORT")
BOUNCER=$(run pgbouncer "$BOUNCER_PORT")
SHIM_RSS=$(awk '/VmRSS/ {print $2}' "/proc/$SHIM_PID/status")

printf '%-10s %12s %10s %10s\n' target tps p50_ms p99_ms
for line in "$DIRECT" "$SHIM" "$BOUNCER"; do
  # shellcheck disable=SC2086
  printf '%-10s %12s %10s %10s\n' $line
done
read -r _ d_tps d_p50 d_p99 <<< "$DIRECT"
read -r _ s_tps s_p50 s_p99 <<< "$SHIM"
read -r _ b_tps _ _ <<< "$BOUNCER"
awk -v d="$d_tps" -v s="$s_tps" -v b="$b_tps" -v dp50="$d_p50" -v sp50="$s_p50" -v dp99="$d_p99" -v sp99="$s_p99" 'BEGIN {
  printf "shim/direct TPS     %.3f  (goal >= 0.90)\n", s/d
  printf "shim/pgbouncer TPS  %.3f  (goal >= 1.00)\n", s/b
  printf "shim/direct p50     %.3f\n", sp50/dp50
  printf "shim/direct p99     %.3f\n", sp99/dp99
}'
echo "shim RSS after the run: ${SHIM_RSS} KiB"
