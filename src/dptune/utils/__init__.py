"""Small shared helpers: atomic artefact I/O and typed configs."""
