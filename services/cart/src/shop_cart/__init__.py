"""Sweet Slice cart."""
