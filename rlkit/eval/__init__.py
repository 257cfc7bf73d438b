"""Evaluation the field reports: suites (conf/eval), avg@k / pass@k / maj@k / pass^k, per-problem results."""
