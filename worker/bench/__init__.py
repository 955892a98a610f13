"""`worker bench`: throughput, latency, memory and exact counters of the worker on a private database and vhost."""
