"""RabbitMQ: topology, confirmed publishing, settlement policy and the consumer."""
