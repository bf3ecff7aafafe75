"""Models: the registry (manifest, fetch, verified loading) and, later, the project's detector."""
