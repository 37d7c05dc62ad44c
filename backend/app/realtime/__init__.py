"""Socket.IO: connection auth, subscriptions (events.py) and what the workers emit (emit.py)."""
