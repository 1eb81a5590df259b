"""HeTu logic workers."""
