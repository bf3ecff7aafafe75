"""Prometheus metrics of the ingest workers (one set per process)."""

from prometheus_client import Counter, Histogram

RECEIVED = Counter("smartsite_ingest_received", "Messages received", ["kind"])
WRITTEN = Counter("smartsite_ingest_written_rows", "Rows written", ["table"])
DUPLICATES = Counter("smartsite_ingest_duplicates", "Messages already ingested (redeliveries)")
DEAD_LETTERED = Counter("smartsite_ingest_dead_lettered", "Messages dead-lettered", ["reason"])
BATCH_SECONDS = Histogram(
    "smartsite_ingest_batch_seconds",
    "Time to write one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
