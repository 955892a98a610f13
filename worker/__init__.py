"""Persistence worker: consumes LLM gateway events from RabbitMQ and stores them in PostgreSQL."""

__version__ = "0.1.0"
