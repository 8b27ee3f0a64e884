"""From a sampling request to image bytes: limits, HTTP caching, batching, the generator cache."""
