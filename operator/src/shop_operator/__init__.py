"""Sweet Slice rollout operator: canary releases of a Deployment with metric analysis."""
