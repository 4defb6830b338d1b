"""The gateway: routing table (routes.py) and nginx configuration rendering (render.py)."""
