"""The HTTP API over the worker's database: users, API keys, quota, conversations, usage, search."""
