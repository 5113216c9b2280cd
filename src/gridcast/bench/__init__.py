"""Benchmark runners on real data: each prints its numbers beside baselines measured in the same run."""
