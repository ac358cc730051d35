"""Run every row of issue 18 in the simulator for a limiter class."""

import importlib, sys, math

sys.path.insert(0, "/work/main")
sys.path.insert(0, "/tmp/rl")
from tests import rate_sim as sim

which = sys.argv[1] if len(sys.argv) > 1 else "new"
if which == "old":
    mod = importlib.import_module("old_ratelimit")
    make = lambda learned: mod.AdaptiveRateLimiter(ssthresh=learned)
    learned_of = lambda lim: lim.learned_rps
    retry = sim.botocore_standard_backoff
else:
    mod = importlib.import_module("pipeline.ratelimit")
    make = lambda learned: mod.AdaptiveRateLimiter(learned=learned)
    learned_of = lambda lim: lim.learned
    retry = sim.immediate_retry
if len(sys.argv) > 2:
    retry = getattr(sim, sys.argv[2])


def one(account, calls, learned=None, workers=16, cpu_s=0.0):
    t = sim.Target(make(learned), account, calls, workers)
    sim.run([t], retry_delay=retry, cpu_s=cpu_s)
    return t


fails = []


def check(name, ok, text):
    print(f"{'ok ' if ok else 'BAD'} {name}: {text}")
    if not ok:
        fails.append(name)


print("== hard limits, 300 calls")
for cap in ("L", 1):
    for L in (1, 2, 5, 10, 20, 50, 100):
        learned = None
        row = []
        for n in range(4):
            acc = sim.Account(limit_rps=L, capacity=None if cap == "L" else 1)
            t = one(acc, 300, learned)
            learned = learned_of(t.limiter)
            wall = t.finished / (300 / L)
            lim = max(0.02 * t.attempts, 6) if n == 0 else 0.02 * t.attempts
            ok = t.throttled <= lim and wall <= 1.15
            row.append(
                f"{t.throttled:3d} ({t.throttled_share:5.1%}) {wall:4.2f}x ->{learned and round(getattr(learned, 'rps', learned), 1)}"
            )
            if not ok:
                fails.append(f"L={L} C={cap} sync {n}")
        print(f"L={L:3} C={cap}: " + " | ".join(row))

print("== random throttles, no limit")
for calls in (300, 1000):
    base = one(sim.Account(), calls).finished
    for p in (0.02, 0.05, 0.10):
        t = one(sim.Account(noise=p, seed=3), calls)
        check(
            f"noise {p} {calls}",
            t.finished <= 1.5 * base,
            f"{t.finished / base:.2f}x unthrottled ({t.finished:.3f} vs {base:.3f}), throttled {t.throttled}, final rate {t.rates[-1][1]:.0f}",
        )

print("== neighbour")
for N, L in ((8, 20), (15, 20)):
    learned = None
    for n in range(3):
        acc = sim.Account(limit_rps=L, neighbour_rps=N)
        t = one(acc, 300, learned)
        learned = learned_of(t.limiter)
        floor = 300 / (L - N)
        ok = t.throttled_share <= 0.03 and t.neighbour_share <= 0.03 and t.finished <= 1.3 * floor
        check(
            f"neighbour {N}/{L} sync {n}",
            ok,
            f"ours {t.throttled} ({t.throttled_share:.1%}), neighbour {acc.neighbour_throttled}/{acc.neighbour_attempts} ({t.neighbour_share:.1%}), wall {t.finished / floor:.2f}x fair floor, learned {learned and round(getattr(learned, 'rps', learned), 1)}",
        )

print("== unthrottled")
for calls in (300, 1000, 3000):
    t = one(sim.Account(), calls)
    ideal = calls * sim.LATENCY_S / 16
    check(
        f"unthrottled {calls}",
        t.finished <= 1.05 * ideal + 0.05,
        f"{t.finished:.3f} s vs {ideal:.3f} ideal ({t.finished / ideal:.2f}x)",
    )

print("== 8 accounts side by side, 20 rps, 130 calls each, 8 workers, 1.5 ms CPU a call")
learned = [None] * 8
for n in range(3):
    shared = mod.SharedStart() if which == "new" else None
    ts = [
        sim.Target(
            mod.AdaptiveRateLimiter(learned=learned[i], shared=shared)
            if shared
            else make(learned[i]),
            sim.Account(limit_rps=20, seed=i),
            130,
            8,
        )
        for i in range(8)
    ]
    sim.run(ts, retry_delay=retry, cpu_s=0.0015)
    learned = [learned_of(t.limiter) for t in ts]
    thr = sum(t.throttled for t in ts)
    att = sum(t.attempts for t in ts)
    wall = max(t.finished for t in ts)
    check(
        f"8 accounts sync {n}",
        thr <= 0.02 * att,
        f"throttled {thr}/{att} ({thr / att:.1%}), per target {[t.throttled for t in ts]}, wall {wall / (130 / 20):.2f}x",
    )
print("FAILED:", fails)
