"""`relay run`, the operational layer: the run loop, its settings, logging setup and metrics server.

The embeddable core never imports this package (an import-linter contract says so): embedding
relay costs none of it.
"""
