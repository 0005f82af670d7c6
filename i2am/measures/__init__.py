"""Pure measures on maps and images (deletion curves, localisation, boxes, image quality): functions of tensors, no
models, no run folders. The evaluators in ``i2am.evaluation`` call them during runs."""
