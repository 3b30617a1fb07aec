"""Evaluate a checkpoint: python eval.py experiment=NAME ckpt_path=PATH  (see README)."""

from attnlab.cli import eval_main

if __name__ == "__main__":
    eval_main()
