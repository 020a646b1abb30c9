"""What the training recipe (emotion_lab/train.py) needs and a reader of it need not see."""
