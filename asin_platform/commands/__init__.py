"""Subcommands of `asin-platform`, one module per layer; each exposes ``register(subparsers)``."""
