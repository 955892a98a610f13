"""The LiteLLM callback against the real LiteLLM (offline, mocked responses), RabbitMQ and worker."""
