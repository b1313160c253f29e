"""Sweet Slice notification."""
