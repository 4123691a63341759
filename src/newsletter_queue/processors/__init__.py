"""What each job does: email batches, analytics aggregation and AI jobs."""
