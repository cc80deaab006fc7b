"""The load balancer: an async reverse proxy that pins each request to the least-loaded worker."""
