"""Data stage: downloads, archives, corpus and question readers, splits, the answerable filter."""
