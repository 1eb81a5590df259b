"""HeTu C# SDK generator."""
