"""Judging answers with the gold labeler, the metrics, the pretraining probes, the counted n-grams, the report,
the sweep's figures."""
