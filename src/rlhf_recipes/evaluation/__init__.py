"""Generating answers, judging them with the gold labeler, and drawing the report."""
