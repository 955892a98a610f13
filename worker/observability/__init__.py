"""Metrics, health and the HTTP endpoint that serves them."""
