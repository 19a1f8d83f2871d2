"""relay's benchmarks: `python -m benchmarks` (or `just bench`) prints figures, never asserts.

Each run starts its own embedded PostgreSQL (fsync on, so commit figures are honest), measures
the pure-SQL limit, a bare psycopg loop, relay itself and its peers side by side, and writes
`benchmarks/results/results.md` and `benchmarks/results/drain.png`.
"""
