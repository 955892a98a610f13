"""The wire contract with the gateway: names, reasons, event schemas and decoding."""
