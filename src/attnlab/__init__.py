"""attnlab: attention and Transformers from the ground up, trained with Lightning + Hydra."""
