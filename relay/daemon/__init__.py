"""`relay run`: its loop, settings, logging setup and metrics server; the core never imports it."""
