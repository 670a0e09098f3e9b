"""Scripts that bring up what the deployments need (importable so tests use the same code)."""
