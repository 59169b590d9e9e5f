"""A module that only test_registry's lazy-factory test imports (through the registry)."""
