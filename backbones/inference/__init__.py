"""Running a loaded model on images: decoding (images), the model's own transforms (preprocessing), logits and
class probabilities, top-k predictions (predict)."""
