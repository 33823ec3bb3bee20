"""The ingress's ASGI middleware, one concern each. Their order is written once, in
app/api.py."""
