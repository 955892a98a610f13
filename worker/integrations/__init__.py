"""Gateway integrations on top of the producer library (`worker.producer`); each is an optional extra."""
