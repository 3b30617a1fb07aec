"""Train a model: python train.py experiment=NAME [overrides]  (see README)."""

from attnlab.cli import train_main

if __name__ == "__main__":
    train_main()
