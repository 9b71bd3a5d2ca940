"""What starts and describes clusters: the embedded local stack (Ray head + SeaweedFS)."""
