"""Private databases and vhosts beside the configured servers: one kit for the test suite and the bench."""
