"""What the worker and the balancer both need where clients connect (each can be the process
clients reach): only uvicorn, h11 and the standard library, nothing of either program."""
