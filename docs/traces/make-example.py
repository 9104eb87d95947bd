"""Writes example.trace: a synthetic trace (not a recording) in the format
of `--arrival trace:FILE`, shaped like a client that flushes a buffer:
every 10 ms a flush of 80 frames over 1 ms, over a Poisson background of
2,000 frames/s; 200 ms, a mean of 10,000 frames/s. Deterministic (seed 1).

    python3 docs/traces/make-example.py > docs/traces/example.trace
"""
import random

rng = random.Random(1)
SPAN_NS = 200_000_000
times = []
for flush in range(0, SPAN_NS, 10_000_000):
    times += [flush + i * 1_000_000 // 80 for i in range(80)]
t = 0
while True:
    t += round(rng.expovariate(2_000 / 1e9))
    if t >= SPAN_NS:
        break
    times.append(t)
times.sort()
print("# Synthetic example trace (docs/traces/make-example.py), not a recording:")
print("# a flush of 80 frames over 1 ms every 10 ms, over Poisson arrivals at")
print("# 2,000 frames/s; 200 ms. One arrival time per line, integer ns.")
for t in times:
    print(t)
