"""HeTu: the app author API."""
