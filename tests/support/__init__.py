"""Helpers the test tiers import: media generators, the store proxy, the lifecycle driver,
a throwaway Ray cluster, the repository's paths, the fixtures' implementations, and what the
test modules of one theme share (specs, cluster configs, the bad-media corpus)."""
