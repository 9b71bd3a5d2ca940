"""Object storage: URIs, S3 clients and settings, outage waits, leases, pointers, Delta tables, the data contract."""
