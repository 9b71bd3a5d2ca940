"""The unit tier: no Ray cluster, no object store server; each module runs in seconds.

A unit test that needs the store belongs in tests/integration/ (the `local_stack` fixture
is not defined here, so asking for it fails at setup)."""
