"""The model store: exported versions, digests, the LATEST pointer, trust checks before loading."""
