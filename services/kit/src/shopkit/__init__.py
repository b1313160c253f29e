"""Sweet Slice kit."""

# The platform's version: in each OpenAPI document, and as a tag and meta of every instance
# registered in Consul.
VERSION = "0.1.0"
