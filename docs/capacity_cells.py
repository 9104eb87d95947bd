"""How the docs/*.sh scripts write a capacity from a run.json and judge a
change between two: shared by arrivals.sh and calls.sh."""


def cell(r):
    """A capacity record as `clients (low-high)`, or `(>=low)` when the
    search found no upper bound."""
    hi = r["interval"]["high"]
    rng = f"{r['interval']['low']}-{hi}" if hi is not None else f">={r['interval']['low']}"
    return f"{r['clients']} ({rng})"


def disjoint(a, b):
    """Whether two capacities' intervals do not overlap: a change beyond
    the noise."""
    (al, ah), (bl, bh) = [(r["interval"]["low"], r["interval"]["high"]) for r in (a, b)]
    return (ah is not None and ah < bl) or (bh is not None and bh < al)
