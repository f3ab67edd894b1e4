#!/bin/sh
# A/B of two builds of the same benchmarks, alternating A B A B ... so that
# both see the same phases of a noisy VM; prints the median of each figure
# per build and the ratio B/A.
#
#   test/bench/ab_compare.sh OLD_BIN_DIR NEW_BIN_DIR ROUNDS 'bench args' bench...
#
# Example (the regression check of issue 4, doc/adr/0002-work-stealing.md):
#   test/bench/ab_compare.sh /tmp/old/bin /tmp/new/bin 7 '--only=troupe --reps=1' \
#     pingpong_cross_shard fanout_throughput
set -eu
a=$1 b=$2 rounds=$3 args=$4
shift 4
out=$(mktemp -d)
for i in $(seq "$rounds"); do
  for bench in "$@"; do
    "$a/$bench" $args 2>/dev/null | grep '"unit":"\(ns/op\|msgs/s\)"' >>"$out/A"
    "$b/$bench" $args 2>/dev/null | grep '"unit":"\(ns/op\|msgs/s\)"' >>"$out/B"
  done
done
python3 - "$out/A" "$out/B" <<'PY'
import json, statistics, sys
def load(p):
    d = {}
    for line in open(p):
        r = json.loads(line)
        d.setdefault((r["bench"], r["impl"], r["unit"]), []).append(r["value"])
    return d
A, B = load(sys.argv[1]), load(sys.argv[2])
for k in sorted(A):
    if k not in B: continue
    ma, mb = statistics.median(A[k]), statistics.median(B[k])
    print(f"{k[0]:22} {k[1]:22} {k[2]:7} A {ma:12.1f}  B {mb:12.1f}  B/A {mb/ma:5.3f}  (n={len(A[k])})")
PY
rm -rf "$out"
