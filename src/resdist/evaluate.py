"""Top-1 / top-5 accuracy of a network (or an exported model's predict function) over a data set: used by training
(validation each epoch) and by eval.py (``deploy.eval_job``)."""
import time

import numpy as np

from .data import checked


def evaluate(net, dataset, predict=None):
    """Returns {"top1", "top5" (percent), "num_samples", "seconds"}. ``net`` (a Cell) is put in eval mode; or
    ``predict`` maps numpy images to numpy logits (an exported model, see ``deploy.exported.load_exported``)."""
    if predict is None:
        net.set_train(False)
    correct1 = correct5 = seen = 0
    start = time.time()
    for images, labels in checked(dataset.create_tuple_iterator(num_epochs=1), "evaluation data"):
        logits = net(images).asnumpy() if predict is None else predict(images.asnumpy())
        labels = labels.asnumpy()
        k = min(5, logits.shape[1])
        topk = np.argpartition(-logits, k - 1, axis=1)[:, :k]
        correct1 += int((logits.argmax(1) == labels).sum())
        correct5 += int((topk == labels[:, None]).any(1).sum())
        seen += len(labels)
    if seen == 0:
        raise ValueError("the evaluation data set is empty")
    return {"top1": 100.0 * correct1 / seen, "top5": 100.0 * correct5 / seen, "num_samples": seen,
            "seconds": round(time.time() - start, 2)}
