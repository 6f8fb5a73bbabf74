"""Acceptance tests: real twistd processes, real sandboxes, the whole farm."""
