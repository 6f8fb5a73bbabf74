"""The common job: status machine, model, leases, retries, the job-type
registry and the native job runner."""

__all__ = []
