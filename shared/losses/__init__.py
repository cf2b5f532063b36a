"""Self-supervised losses, one per file."""
