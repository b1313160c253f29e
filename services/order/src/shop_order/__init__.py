"""Sweet Slice order."""
