"""Helpers both test tiers import: media generators, the store proxy, the lifecycle driver,
a throwaway Ray cluster, the repository's paths and the fixtures' implementations."""
