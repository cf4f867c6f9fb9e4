#!/usr/bin/env python3
"""Folds `perf script -F comm,tid,ip,sym` output: the share of samples per (leaf symbol, first
Gregor/tonic/h2 frame), and per first Gregor frame. Used for docs/benchmarks.md's profile:

    perf record -F 299 --call-graph dwarf,16384 -p PID1,PID2,PID3 -o perf.data -- sleep 6
    perf script -i perf.data -F comm,tid,ip,sym > perf.txt
    python3 benches/perf_fold.py perf.txt 40
"""
import sys, collections, re
samples=[]; cur=None
for line in open(sys.argv[1]):
    if not line.strip():
        if cur: samples.append(cur); cur=None
        continue
    if not line.startswith((' ','\t')):
        cur=[]; continue
    parts=line.strip().split(None,1)
    sym=parts[1] if len(parts)>1 else '?'
    if cur is not None: cur.append(sym)
if cur: samples.append(cur)
keys=('gregor_','tonic::','h2::','prost','hyper::','kafka_protocol','crc_fast','bytes::')
agg=collections.Counter(); own=collections.Counter()
for st in samples:
    leaf=st[0] if st else '?'
    frame=next((f for f in st if any(k in f for k in ('gregor_storage','gregor_broker','gregor_client','gregor_cli'))), None)
    frame2=next((f for f in st if any(k in f for k in keys)), None)
    agg[(re.sub(r'\(.*','',leaf)[:60], re.sub(r'<.*','',frame or frame2 or '-')[:110])]+=1
    if frame: own[re.sub(r'\s*\(inlined\)','',frame)[:140]]+=1
n=len(samples)
print("samples",n)
for (l,f),c in agg.most_common(int(sys.argv[2]) if len(sys.argv)>2 else 40):
    print(f"{100*c/n:5.1f}% {l:60s} <- {f}")
print("--- by first gregor frame")
for f,c in own.most_common(25): print(f"{100*c/n:5.1f}% {f}")
