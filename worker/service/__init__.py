"""Service layer: one handler per event type, applied inside a Unit of Work."""
