"""Write throughput of the results store, SQLite beside PostgreSQL, with several concurrent writer processes.

Each writer is a forked process with its own store; all start together and add ``--per-writer``
benchmark results (a realistic payload: ``BenchmarkResult.to_record()``-shaped, ~1 KiB of JSON)
each, one transaction per result as ``bench`` does, then retry 10 of their run ids (which must
add nothing). Prints a markdown table of results/s (rows written / wall time) and checks the row
count. PostgreSQL is a throwaway local cluster (tests/unit/pg.py: Debian's server binaries, default
durability settings (fsync on, like SQLite's), loopback TCP with password authentication) unless
``--pg URL`` names a server.

    python benchmarks/store_throughput.py
    python benchmarks/store_throughput.py --writers 4 --per-writer 500 --pg postgresql://u:p@host/db
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backbones.results.store import ResultsStore  # noqa: E402
from tests.unit import pg  # noqa: E402
from tests.unit.results_files import latency_payload  # noqa: E402


def measure(url: str, label: str, writers: int, per_writer: int, repeats: int) -> dict:
    seconds = []
    for _ in range(repeats):
        ResultsStore(url).clear()
        seconds.append(pg.write_concurrently(url, processes=writers, per_process=per_writer,
                                             payload=latency_payload()))
        rows = ResultsStore(url).count()
        if rows != writers * per_writer:
            raise SystemExit(f"{label}: {rows} rows, expected {writers * per_writer}")
    best = min(seconds)
    return {"backend": label, "rows": writers * per_writer, "seconds": best,
            "per_s": writers * per_writer / best, "all": seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--per-writer", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=3, help="runs per backend; the best is reported")
    parser.add_argument("--pg", default=None, metavar="URL", help="a PostgreSQL database to use (it is cleared)")
    args = parser.parse_args(argv)

    cluster = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            if args.pg is None:
                cluster = pg.start_cluster(durable=True) if pg.server_binaries() else None
                if cluster is None:
                    raise SystemExit("no PostgreSQL server binaries (apt-get install postgresql) and no --pg URL")
            pg_url = args.pg or cluster.create_database()
            rows = [
                measure(str(Path(tmp) / "results.sqlite"), "SQLite (file, rollback journal)", args.writers,
                        args.per_writer, args.repeats),
                measure(pg_url, "PostgreSQL (psycopg 3, loopback TCP)", args.writers, args.per_writer, args.repeats),
            ]
        finally:
            if cluster is not None:
                cluster.close()
    print(f"Results store write throughput, {args.writers} concurrent writer processes x {args.per_writer} "
          f"results each, one transaction per result, best of {args.repeats}; {platform.node()}, "
          f"Python {platform.python_version()}:\n")
    print("| backend | rows | wall s | results/s | all runs (s) |")
    print("|---|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['rows']} | {r['seconds']:.2f} | {r['per_s']:.0f} | "
              f"{', '.join(f'{s:.2f}' for s in r['all'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
