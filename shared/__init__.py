"""assistflow core: deployed with every function. Knows nothing of the local cloud."""
