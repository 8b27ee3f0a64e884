"""ganserve: train GANs on request and serve their generators over HTTP."""
