"""Shared test support: servers, harnesses, waits and the execution log."""
