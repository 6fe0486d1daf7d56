"""Discovery: what the node is (kernel, OS, GPUs, modules, security policy), as frozen facts."""
