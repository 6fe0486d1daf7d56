"""The agent's view of its Kubernetes cluster: its node's state, stop decisions, cordon and evictions."""
