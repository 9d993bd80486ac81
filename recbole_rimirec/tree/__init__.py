"""Item tree: vectors from the train split, hierarchical k-means, node ranges."""
