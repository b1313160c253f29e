"""Sweet Slice user."""
