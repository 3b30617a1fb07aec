"""Plain torch.nn models: no Lightning, no Hydra; each usable alone in a notebook."""
