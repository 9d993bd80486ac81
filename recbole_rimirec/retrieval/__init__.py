"""Retrieval: node selection, per-node Faiss index and its exact twin, merging."""
