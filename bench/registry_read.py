"""The sampling path's registry read on SQLite, with and without the change counter (issue 18).

`store.registry.LiveReader.find` is what every samples.png request asks the registry. On a
SQLite file it answers from memory while `PRAGMA data_version` has not moved; this script
alternates rounds with that check on and off (the reader's `_watches_changes`) on one
registered version, `best` alias, and prints the CPU per read of the calling thread.

    python bench/registry_read.py [--rounds 15] [--reads 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from ganserve.store import jobs, registry
from ganserve.store.db import make_engine, make_session_factory
from ganserve.store.migrate import upgrade_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--reads", type=int, default=200, help="reads per round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'registry.db'}"
        upgrade_database(url)
        engine = make_engine(url)
        with make_session_factory(engine)() as session:
            job = jobs.create_job(session, "bench", {"name": "bench"}, total_steps=1)
            registry.register_version(
                session, "bench", job.id, step=1, artifact_path=None,
                description={"architecture": "mlp"}, metrics={},
            )  # fmt: skip
            registry.set_alias(session, "bench", "best", 1)
            session.commit()
        per_read: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for watches in (False, True):
                reader = registry.LiveReader(engine)
                reader._watches_changes = watches
                reader.find("bench", "best")  # connect outside the timed reads
                start = time.thread_time()
                for _ in range(args.reads):
                    reader.find("bench", "best")
                per_read[watches].append((time.thread_time() - start) / args.reads * 1e6)
                reader.close()
        engine.dispose()
    for watches, label in ((False, "query every read"), (True, "data_version check")):
        values = per_read[watches]
        print(
            f"{label:>20}: median {statistics.median(values):6.1f} us CPU per read "
            f"(min {min(values):.1f}, max {max(values):.1f}; {args.rounds} rounds x {args.reads})"
        )


if __name__ == "__main__":
    main()
