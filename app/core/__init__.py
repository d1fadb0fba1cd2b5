"""Core helpers: they import no models and no services (docs/architecture.md)."""
