"""PyTorch side of ictal: the CWT ResNet, training, evaluation, explanations, reports."""
