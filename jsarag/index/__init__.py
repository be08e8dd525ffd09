"""Index stage: BM25 (Lucene via Pyserini) and dense (FAISS) indexes, retrieval baselines, the JVM."""
