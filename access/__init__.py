"""Who may use the service: API keys, their roles and limits, checked at the door.

Shared by the worker and the balancer (each can be the process clients reach), so it imports
neither of them, nor the engine: only the standard library and ASGI types.
"""
