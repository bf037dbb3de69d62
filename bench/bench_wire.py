"""What the one wire contract costs per call: the recommender server reading a /recommend
query with :data:`movierec.wire.recommender.RECOMMEND` (every parameter checked by the one
rule), and the web's AI client writing one with the same operation. Microseconds per call,
best of five runs of 100,000 calls each, one thread.

    .venv/bin/python bench/bench_wire.py
"""

from __future__ import annotations

import timeit

from werkzeug.datastructures import MultiDict

from movierec.wire import recommender as wire

CALLS = 100_000
QUERIES = {
    "user, k": {"user": "12345", "k": "24"},
    "user, k, 5 excluded, 2 demoted, shard": {
        "user": "12345",
        "k": "24",
        "exclude": "11,22,33,44,55",
        "demote_genres": "Horror,Drama",
        "shard": "1",
        "shards": "4",
    },  # fmt: skip
}
VALUES = {
    "user, k": {"user": 12345, "k": 24},
    "user, k, 5 excluded, 2 demoted, shard": {
        "user": 12345,
        "k": 24,
        "exclude": [11, 22, 33, 44, 55],
        "demote_genres": ["Horror", "Drama"],
        "shard": (1, 4),
    },  # fmt: skip
}


def best_us(call) -> float:
    return min(timeit.repeat(call, number=CALLS, repeat=5)) / CALLS * 1e6


def main() -> None:
    print("| query | server reads (µs) | client writes (µs) |")
    print("|---|---:|---:|")
    for name, query in QUERIES.items():
        args, values = MultiDict(query), VALUES[name]
        assert wire.RECOMMEND.read(args) == {
            "exclude": (), "demote_genres": (), "shard": None, **_read_back(values)
        }  # fmt: skip
        read = best_us(lambda args=args: wire.RECOMMEND.read(args))
        write = best_us(lambda values=values: wire.RECOMMEND.query(**values))
        print(f"| {name} | {read:.1f} | {write:.1f} |")


def _read_back(values: dict) -> dict:
    """``values`` as the server reads them (lists as tuples)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


if __name__ == "__main__":
    main()
