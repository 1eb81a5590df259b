"""HeTu gateway."""
