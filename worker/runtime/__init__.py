"""Process runtime: composition root, dependency gate, signals."""
