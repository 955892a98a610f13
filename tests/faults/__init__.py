"""Fault-injection suite: killed workers, dead services, cut links; every scenario ends with the checker."""
