#!/usr/bin/env python3
"""Plots the output of sweep_stealing.py with gnuplot (Debian: gnuplot-nox).

    test/bench/plot_stealing.py sweep.jsonl doc/img/stealing-knobs.svg

One panel per swept knob: makespan / ideal against the knob's value, one
line per grain (and per extra flag set). Not run by CI.
"""
import collections
import json
import os
import subprocess
import sys
import tempfile

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out = sys.argv[2]
panels = collections.OrderedDict()
for r in rows:
    series = r["bench"].replace("skewed_work_", "") + (" " + r["extra"] if r["extra"] else "")
    panels.setdefault(r["knob"] + (" (" + r["extra"] + ")" if r["extra"] else ""), collections.OrderedDict()) \
          .setdefault(series, []).append((r["value_of_knob"], r["value"] / r["ideal"]))

tmp = tempfile.mkdtemp()
script = [
    f'set terminal svg size 900,{300 * ((len(panels) + 1) // 2)} font "sans,11"',
    f'set output "{out}"',
    f"set multiplot layout {(len(panels) + 1) // 2},2",
    "set ylabel 'makespan / ideal'",
    "set yrange [0.9:2.1]",
    "set key top left",
    "set grid",
]
for i, (panel, series) in enumerate(panels.items()):
    plots = []
    for j, (name, points) in enumerate(series.items()):
        path = os.path.join(tmp, f"{i}_{j}.dat")
        with open(path, "w") as f:
            for x, y in points:
                f.write(f"{x} {y}\n")
        plots.append(f"'{path}' using 1:2 with linespoints title '{name.split(' ')[0]}'")
    knob = panel.split(" ")[0]
    logx = knob in ("steal_batch", "wake", "budget")
    script.append("set logscale x 2" if logx else "unset logscale x")
    script.append(f"set xlabel '{panel}'")
    script.append("plot " + ", ".join(plots))
script.append("unset multiplot")
subprocess.run(["gnuplot"], input="\n".join(script), text=True, check=True)
