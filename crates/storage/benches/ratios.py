#!/usr/bin/env python3
"""Prints the storage / raw throughput table from the last `cargo bench --bench storage` run.

Usage: python3 crates/storage/benches/ratios.py [CARGO_TARGET_DIR]
Reads <target>/criterion/<group>/<storage_x|raw_x>/<size>/new/{benchmark,estimates}.json and
compares median throughputs.
"""
import json
import os
import sys

target = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CARGO_TARGET_DIR", "target")
root = os.path.join(target, "criterion")
rows = {}
for dirpath, _, files in os.walk(root):
    if "benchmark.json" not in files or not dirpath.endswith(os.sep + "new"):
        continue
    with open(os.path.join(dirpath, "benchmark.json")) as f:
        bench = json.load(f)
    with open(os.path.join(dirpath, "estimates.json")) as f:
        est = json.load(f)
    kind, _, variant = bench["function_id"].partition("_")
    if kind not in ("storage", "raw") or not bench.get("throughput"):
        continue
    gib_s = bench["throughput"]["Bytes"] / est["median"]["point_estimate"] * 1e9 / 2**30
    rows.setdefault((bench["group_id"], variant, bench["value_str"]), {})[kind] = gib_s


def fmt(x):
    return f"{x:.2f} GiB/s" if x >= 1 else f"{x * 1024:.1f} MiB/s"


print("| group | case | size | storage | raw | storage ÷ raw |")
print("|---|---|---|---|---|---|")
for (group, variant, size), v in sorted(rows.items()):
    if "storage" in v and "raw" in v:
        print(f"| {group} | {variant} | {size} | {fmt(v['storage'])} | {fmt(v['raw'])} | "
              f"{v['storage'] / v['raw']:.0%} |")
