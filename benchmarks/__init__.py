"""Throughput and leaderboard benchmarks. Each script prints its numbers; none is part of the test suite."""
