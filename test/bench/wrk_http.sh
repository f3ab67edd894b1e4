#!/usr/bin/env bash
# The wrk HTTP check (doc/benchmarks.md, "HTTP check (wrk)"): troupe's
# examples/http_hello (one shard) next to nginx (one worker), both pinned to
# CPU 1 and serving the same "hello\n", each loaded by one wrk thread on
# CPU 0 over 64 keep-alive connections, alternating troupe, nginx, troupe,
# nginx... so that both see the same phases of a noisy machine.
#
#   test/bench/wrk_http.sh [HTTP_HELLO] [--quick] [--rounds=N] [--duration=S] [--connections=N]
#
# HTTP_HELLO: the built example (default: examples/bin/gcc-12/release/.../http_hello,
# `b2 examples//http_hello`). Default: 3 rounds of 10 s per server, after a 2 s
# warm-up each; --quick: 1 round of 2 s, no warm-up.
#
# Prints each run (requests/s, latency percentiles, the busy share of
# CPU 0 and CPU 1 from /proc/stat, the server processes' own CPU time per
# second of the run), the medians, the ratio troupe/nginx, and
# one JSON line per figure:
#   {"bench":"http_hello","impl":"troupe","unit":"req/s","value":...}
#   {"bench":"http_hello_p50","impl":"troupe","unit":"us","value":...}
#   {"bench":"http_hello_p99","impl":"troupe","unit":"us","value":...}
# Installs nothing: wants wrk and nginx (./bootstrap.sh --http-bench installs them),
# taskset and python3. Both servers are killed at exit.
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
bin="" rounds=3 duration=10 warmup=2 connections=64
for a in "$@"; do
  case $a in
    --quick) rounds=1 duration=2 warmup=0 ;;
    --rounds=*) rounds=${a#--rounds=} ;;
    --duration=*) duration=${a#--duration=} ;;
    --connections=*) connections=${a#--connections=} ;;
    -*) echo "usage: $0 [HTTP_HELLO] [--quick] [--rounds=N] [--duration=S] [--connections=N]" >&2; exit 2 ;;
    *) bin=$a ;;
  esac
done
if [ -z "$bin" ]; then
  bin=$(find "$here/examples/bin/gcc-12/release" -type f -name http_hello -perm -u+x 2>/dev/null | head -n1 || true)
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "no http_hello binary${bin:+ at $bin}: build it with 'b2 examples//http_hello' or pass its path" >&2
  exit 2
fi

nginx=$(command -v nginx || true)
[ -z "$nginx" ] && [ -x /usr/sbin/nginx ] && nginx=/usr/sbin/nginx
if ! command -v wrk >/dev/null || [ -z "$nginx" ]; then
  echo "wrk and nginx are needed: ./bootstrap.sh --http-bench (apt-get install wrk nginx-light)" >&2
  exit 2
fi
for tool in taskset python3; do
  command -v $tool >/dev/null || { echo "$tool is needed" >&2; exit 2; }
done
if ! taskset -c 0,1 true 2>/dev/null; then
  echo "CPUs 0 and 1 are needed (wrk on CPU 0, the server on CPU 1)" >&2
  exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wrk_http.XXXXXX")
troupe_pid="" nginx_pid=""
cleanup() {
  for p in $troupe_pid $nginx_pid; do kill -TERM "$p" 2>/dev/null || true; done
  for p in $troupe_pid $nginx_pid; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port free now (nginx takes a port from its config).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_for_port() {  # port, pid
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
# One GET, closing; prints the answer (line ends shown as \r) and checks its body.
probe() {  # name, port
  local answer
  exec 3<>"/dev/tcp/127.0.0.1/$2"
  printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
  answer=$(timeout 5 cat <&3 || true; echo .)  # the dot keeps the last newline
  answer=${answer%.}
  exec 3<&-
  echo "$1 answers (${#answer} bytes):"
  printf '%s' "$answer" | sed 's/\r$/\\r/; s/^/    /'
  case $answer in
    "HTTP/1.1 200 OK"*$'\r\n\r\nhello\n') ;;
    *) echo "$1: not the expected 200 with \"hello\\n\"" >&2; return 1 ;;
  esac
}

# troupe: one shard; pinned to the first CPU of its affinity mask, CPU 1 here.
taskset -c 1 "$bin" --port 0 --shards 1 >"$tmp/troupe.out" 2>"$tmp/troupe.err" &
troupe_pid=$!
for _ in $(seq 100); do
  troupe_port=$(sed -n 's/^serving HTTP on port \([0-9]*\) .*/\1/p' "$tmp/troupe.out")
  [ -n "$troupe_port" ] && break
  sleep 0.05
done
if [ -z "$troupe_port" ] || ! wait_for_port "$troupe_port" "$troupe_pid"; then
  echo "http_hello did not start:" >&2; cat "$tmp/troupe.err" >&2; exit 1
fi

# nginx: one worker (and its master, idle), both on CPU 1; the same body.
nginx_port=$(free_port)
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
$( [ "$(id -u)" = 0 ] && echo "user $(id -un) $(id -gn);" )
events { worker_connections 1024; }
http {
  access_log off;
  default_type text/plain;
  # nginx closes a keep-alive connection after 1000 requests by default
  # (wrk then reconnects); troupe has no such limit: none for either here.
  keepalive_requests 100000000;
  client_body_temp_path $tmp/nginx/body;
  server {
    listen 127.0.0.1:$nginx_port;
    location / { return 200 "hello\n"; }
  }
}
EOF
taskset -c 1 "$nginx" -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx.conf" 2>"$tmp/nginx.err" &
nginx_pid=$!
if ! wait_for_port "$nginx_port" "$nginx_pid"; then
  echo "nginx did not start:" >&2; cat "$tmp/nginx.err" "$tmp/nginx/error.log" >&2 2>/dev/null; exit 1
fi

echo "troupe: $bin --shards 1 (pid $troupe_pid, port $troupe_port); nginx $("$nginx" -v 2>&1 | sed 's/.*\///') (pid $nginx_pid, port $nginx_port)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
probe troupe "$troupe_port"
probe nginx "$nginx_port"

# Busy jiffies and all jiffies of CPU 0 and CPU 1, then the server's own
# jiffies (user + system, all its threads; nginx: master and workers).
cpu_snapshot() {  # server pids...
  awk '/^cpu[01] / { busy = $2 + $3 + $4 + $7 + $8; print busy, busy + $5 + $6 }' /proc/stat | tr '\n' ' '
  local p own=0
  for p in "$@"; do
    own=$((own + $(sed 's/.*) //' "/proc/$p/stat" | awk '{ print $12 + $13 }')))
  done
  echo "$own"
}

# One wrk run; appends "impl rps p50 p75 p90 p99 cpu0 cpu1 errors" to results.
run() {  # impl port seconds record
  local out="$tmp/wrk.$1.txt" before after pids
  if [ "$1" = troupe ]; then pids=$troupe_pid; else pids="$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')"; fi
  before=$(cpu_snapshot $pids)
  taskset -c 0 wrk -t1 -c"$connections" -d"$3"s --latency "http://127.0.0.1:$2/" >"$out"
  after=$(cpu_snapshot $pids)
  [ "$4" = record ] || return 0
  python3 - "$1" "$out" "$before" "$after" "$3" "$(getconf CLK_TCK)" >>"$tmp/results" <<'PY'
import re, sys
impl, path, before, after = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
text = open(path).read()
def us(v):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", v)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]
pct = {p: us(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M)}
rps = float(re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M).group(1))
errors = 0
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
if m: errors += sum(map(int, m.groups()))
m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if m: errors += int(m.group(1))
b, a = list(map(int, before)), list(map(int, after))
cpu = [(a[2*i] - b[2*i]) / max(1, a[2*i+1] - b[2*i+1]) for i in (0, 1)]
server = (a[4] - b[4]) / (float(sys.argv[5]) * int(sys.argv[6]))
print(impl, rps, pct["50"], pct["75"], pct["90"], pct["99"], f"{cpu[0]:.2f}", f"{cpu[1]:.2f}", f"{server:.2f}", errors)
PY
  tail -n1 "$tmp/results" | awk '{ printf "%-7s %10.0f req/s  p50 %7.1f  p75 %7.1f  p90 %7.1f  p99 %7.1f us  cpu0 %s cpu1 %s server %s  errors %d\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }'
}

if [ "$warmup" -gt 0 ]; then
  run troupe "$troupe_port" "$warmup" warmup
  run nginx "$nginx_port" "$warmup" warmup
fi
echo "wrk: taskset -c 0 wrk -t1 -c$connections -d${duration}s --latency http://127.0.0.1:PORT/, $rounds rounds"
for i in $(seq "$rounds"); do
  run troupe "$troupe_port" "$duration" record
  run nginx "$nginx_port" "$duration" record
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$tmp/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    rows.setdefault(f[0], []).append([float(x) for x in f[1:]])
med = {impl: [statistics.median(col) for col in zip(*r)] for impl, r in rows.items()}
print(f"medians over {len(rows['troupe'])} rounds:")
for impl, m in med.items():
    print(f"  {impl:7} {m[0]:10.0f} req/s  p50 {m[1]:.1f} us  p99 {m[4]:.1f} us  cpu0 {m[5]:.2f} cpu1 {m[6]:.2f} server {m[7]:.2f}  errors {int(sum(r[8] for r in rows[impl]))}")
print(f"  troupe/nginx: req/s {med['troupe'][0] / med['nginx'][0]:.2f}, p99 {med['troupe'][4] / med['nginx'][4]:.2f}")
for impl, m in med.items():
    print(f'{{"bench":"http_hello","impl":"{impl}","unit":"req/s","value":{m[0]:.1f}}}')
    print(f'{{"bench":"http_hello_p50","impl":"{impl}","unit":"us","value":{m[1]:.1f}}}')
    print(f'{{"bench":"http_hello_p99","impl":"{impl}","unit":"us","value":{m[4]:.1f}}}')
PY
if grep -q ' [1-9][0-9]*$' "$tmp/results"; then
  echo "some runs had socket errors or non-2xx answers (last column above)" >&2
  exit 1
fi
