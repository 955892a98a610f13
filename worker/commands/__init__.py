"""Implementations of the `worker` subcommands (the parser lives in `worker.cli`)."""
