"""The training side: from feature tables to trained runs and their metrics."""
