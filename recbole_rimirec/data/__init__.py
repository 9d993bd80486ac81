"""Data: dataset construction, training-row loaders, and the item-tree dataset hook."""
