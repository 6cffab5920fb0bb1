"""The projectors: one module each (``projections.registry`` lists them)."""
