"""Judging answers with the gold labeler, the metrics, the pretraining probes, the report, the sweep's figures."""
