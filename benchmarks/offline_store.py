"""Offline store benchmark: the sans-I/O core and its SQLite file.

    python benchmarks/offline_store.py [--quick]

1. **Core** (:class:`~hopline.offline.store.OfflineStore`, memory only):
   envelopes of 500 bytes for 100 recipients with two devices each; puts per
   second, fetch pages (50 envelopes) per second, acks per second (both
   devices, so every envelope is deleted and tombstoned), and the replica path
   (export everything, import into an empty store).
2. **SQLite** (:class:`~hopline.offline.sqlite.OfflineDatabase`, WAL,
   ``synchronous=FULL``, in a temporary directory): single puts (one
   transaction and sync each), batched puts (one transaction per 100, as one
   ``offline.store`` request carries them), acks in pages of 50, and the time
   to reopen a file holding the messages (restart).

Writes benchmarks/results/offline_store.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, write_json
from hopline.offline.sqlite import OfflineDatabase
from hopline.offline.store import Envelope, OfflineStore

NOW = 1_700_000_000.0
DEVICES = (b"phone-0123456789", b"laptop-012345678")


def envelopes(count: int, users: int = 100) -> list[Envelope]:
    """``count`` envelopes of 500 bytes spread over ``users`` recipients."""
    return [
        Envelope(
            n.to_bytes(16, "big"),
            f"user{n % users:04d}",
            frozenset(DEVICES),
            f"sender{n % 37:03d}",
            bytes(500),
            NOW,
        )
        for n in range(count)
    ]


def per_second(count: int, seconds: float) -> int:
    return round(count / seconds) if seconds > 0 else 0


def timed(func: object) -> float:
    start = time.perf_counter()
    func()  # type: ignore[operator]
    return time.perf_counter() - start


def drain(store: OfflineStore | OfflineDatabase, users: int) -> tuple[int, int]:
    """Every device fetches and acks all of its messages; return (pages, acks)."""
    pages = acks = 0
    for u in range(users):
        user = f"user{u:04d}"
        for device in DEVICES:
            cursor, more = 0, True
            while more:
                page = store.fetch(user, device, cursor, 50)
                ids = [m.envelope.message_id for m in page.messages]
                store.ack(user, device, ids, NOW + 1)
                pages, acks = pages + 1, acks + len(ids)
                cursor, more = page.next_cursor, page.more
    return pages, acks


def bench_core(count: int) -> dict[str, int]:
    items = envelopes(count)
    store = OfflineStore()
    put_s = timed(lambda: [store.put(e, NOW) for e in items])
    other = OfflineStore()
    replica_s = timed(lambda: other.import_replica(store.export_for_replica(), NOW))
    pages = [0, 0]

    def run() -> None:
        pages[:] = drain(store, 100)

    drain_s = timed(run)
    assert len(store) == 0 and len(other) == count
    return {
        "envelopes": count,
        "puts_per_s": per_second(count, put_s),
        "replica_envelopes_per_s": per_second(count, replica_s),
        "fetch_and_ack_pages_per_s": per_second(pages[0], drain_s),
        "acks_per_s": per_second(pages[1], drain_s),
    }


def bench_sqlite(count: int, single: int) -> dict[str, float]:
    items = envelopes(count)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "offline.sqlite3"
        db = OfflineDatabase.open(path, NOW)
        single_s = timed(lambda: [db.put(e, NOW) for e in items[:single]])
        rest = items[single:]
        batch_s = timed(
            lambda: [db.put_many(rest[i : i + 100], NOW) for i in range(0, len(rest), 100)]
        )
        db.close()
        size = path.stat().st_size  # closing checkpointed the WAL into the file
        start = time.perf_counter()
        db = OfflineDatabase.open(path, NOW)
        reopen_s = time.perf_counter() - start
        assert len(db.store) == count
        pages = [0, 0]

        def run() -> None:
            pages[:] = drain(db, 100)

        drain_s = timed(run)
        db.close()
    return {
        "envelopes": count,
        "single_puts_per_s": per_second(single, single_s),
        "batched_puts_per_s": per_second(len(rest), batch_s),
        "reopen_s": round(reopen_s, 3),
        "file_mib": round(size / 2**20, 1),
        "acks_per_s": per_second(pages[1], drain_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer envelopes")
    args = parser.parse_args()
    count = 20_000 if args.quick else 100_000
    core = bench_core(count)
    disk = bench_sqlite(count // 5, 500)
    print_table("offline store core (memory)", list(core), [list(core.values())])
    print_table(
        "offline store in SQLite (WAL, synchronous=FULL)", list(disk), [list(disk.values())]
    )
    write_json("offline_store", {"core": core, "sqlite": disk})


if __name__ == "__main__":
    main()
