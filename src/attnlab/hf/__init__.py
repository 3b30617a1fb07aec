"""Hugging Face interop: the names of the same weights in HF's models and ours, import and
export, and the pretrained folders and checkpoints a run starts from (``model.pretrained``)."""
