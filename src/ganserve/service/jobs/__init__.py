"""Training jobs over HTTP: the spec, submit/cancel/history, the broker queue, SSE events, plots."""
