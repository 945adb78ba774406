"""The runtime layer: providers, the attempt runner, cron, the gateway.

It uses :mod:`fencepost.core` through its public API only (``from fencepost import ...``).
"""
