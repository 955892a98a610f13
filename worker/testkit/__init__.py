"""One kit for the test suite and the bench: private databases and vhosts beside the configured servers,
and the ledger checker (with the counter sums `worker verify` runs)."""
