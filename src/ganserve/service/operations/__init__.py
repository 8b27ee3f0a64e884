"""Keeping the service healthy: the reaper of lost jobs and Prometheus telemetry."""
