"""Sub-commands of ``python -m backbones``, one module per area, each with ``register(subparsers)``."""
