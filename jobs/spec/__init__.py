"""Job specs: strict pydantic models, loaded from YAML with errors that name the file, field and fix."""
