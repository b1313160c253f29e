"""Sweet Slice payment."""
