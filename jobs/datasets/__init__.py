"""Datasets a job can train on: CIFAR-10 and digits loaders, ingest into a store, synthetic media."""
