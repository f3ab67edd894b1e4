#!/usr/bin/env python3
"""Sweeps the work-stealing knobs with skewed_work; the figures behind
doc/adr/0002-work-stealing.md and the plot in doc/placement.md.

    test/bench/sweep_stealing.py BIN_DIR [ROUNDS] [SET] > sweep.jsonl

SET is `many` (default: the 1000-actor skewed_work) or `few` (3 actors with
long chains: the case where a backlog is short and a parked peer must be
woken for it).

Each knob is swept on its own, every other knob at its default; the values
of one knob are interleaved round by round (v1 v2 v3 v1 v2 v3 ...) so that
they share the VM's phases, and the median per value is printed as one JSON
line, with the median single-threaded time / 2 (`ideal`) of the same rounds:

  {"bench":"skewed_work_fine","knob":"steal_batch","value_of_knob":4,
   "unit":"ms","value":770.1,"ideal":752.0,"steals":33}
"""
import json
import re
import statistics
import subprocess
import sys

BIN = sys.argv[1]
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3

# knob flag, values, extra flags (steering off where the knob is about
# stealing alone: with steering on, most of the skew is gone before an idle
# shard ever looks for work).
SWEEPS = [
    ("steal-batch", [1, 4, 16, 32, 128], ["--steer=0"]),
    ("wake", [0, 1, 4, 16, 64], []),
    ("wake", [0, 1, 4, 16, 64], ["--steer=0"]),
    ("spin-us", [0, 50, 200], []),
    ("budget", [8, 64, 256], []),
    ("probes", [1, 2, 3], ["--steer=0", "--shards=4"]),
]


if len(sys.argv) > 3 and sys.argv[3] == "few":
    SWEEPS = [
        ("wake", [0, 1, 2, 4], ["--actors=3", "--spin-us=0"]),
        ("wake", [0, 1, 2, 4], ["--actors=3"]),
        ("budget", [8, 64, 256], ["--actors=3"]),
    ]


def run(args):
    p = subprocess.run([f"{BIN}/skewed_work", "--reps=1"] + args,
                       capture_output=True, text=True, check=True)
    figures = {}
    for line in p.stdout.splitlines():
        r = json.loads(line)
        figures[(r["bench"], r["impl"])] = r["value"]
    steals = [int(m) for m in re.findall(r"sum .* steals=(\d+)", p.stderr)]
    return figures, steals


def main():
    for flag, values, extra in SWEEPS:
        for grain in ("coarse", "fine"):
            bench = f"skewed_work_{grain}"
            times = {v: [] for v in values}
            steals = {v: [] for v in values}
            single = []
            for _ in range(ROUNDS):
                figures, _ = run([f"--grain={grain}", "--only=single_thread"])
                single.append(figures[(bench, "single_thread")])
                for v in values:
                    figures, s = run([f"--grain={grain}", "--only==troupe", f"--{flag}={v}"] + extra)
                    times[v].append(figures[(bench, "troupe")])
                    steals[v] += s
            ideal = statistics.median(single) / 2
            for v in values:
                print(json.dumps({
                    "bench": bench, "knob": flag.replace("-", "_"), "value_of_knob": v,
                    "extra": " ".join(extra), "unit": "ms",
                    "value": round(statistics.median(times[v]), 1), "ideal": round(ideal, 1),
                    "steals": int(statistics.median(steals[v])) if steals[v] else 0,
                }), flush=True)


main()
