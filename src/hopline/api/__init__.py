"""The daemon's local API (HTTP + WebSocket on loopback, token-guarded) and its documents."""
