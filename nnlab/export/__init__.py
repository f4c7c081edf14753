"""Export a trained model as a program that runs without nnlab."""
