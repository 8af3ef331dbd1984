"""The example's management commands."""
