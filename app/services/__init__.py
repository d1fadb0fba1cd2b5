"""Services: the workflows that reach several subsystems; interfaces call them,
they call the models and core helpers (docs/architecture.md)."""
