"""Report stage: reading the run tree, statistics, tables, figures and the claims check."""
