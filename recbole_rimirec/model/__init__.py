"""Plugin models, one per file: ``<class>.lower().py``."""
