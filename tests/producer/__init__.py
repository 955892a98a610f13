"""The producer library: builders, identity rule, spool, publishing, provisioning."""
