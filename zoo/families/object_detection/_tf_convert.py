"""Child process of :mod:`.convert`: ``python -m ... PB OUT INPUT BOXES LOGITS ANCHORS SIZE OPSET``."""

import subprocess
import sys
from pathlib import Path

import numpy as np


def main(pb: str, out: str, inp: str, boxes: str, logits: str, anchors: str, size: str, opset: str) -> None:
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(Path(pb).read_bytes())
    with tf.Graph().as_default() as g:
        tf.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            image = np.zeros((1, int(size), int(size), 3), np.uint8)
            a, lg = sess.run([anchors, logits], {"image_tensor:0": image})
    raw = Path(out) / "raw.onnx"
    subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--graphdef", pb, "--inputs",
                    f"{inp}[1,{size},{size},3]", "--outputs", f"{boxes},{logits}", "--opset", opset,
                    "--output", str(raw)], check=True)
    raw.rename(Path(out) / "model.onnx")  # batch 1: the TF graph's Reshapes hard-code it
    np.save(Path(out) / "anchors.npy", np.asarray(a, np.float32).reshape(-1, 4))
    np.save(Path(out) / "logits_dim.npy", np.asarray(lg.shape[-1]))


if __name__ == "__main__":
    main(*sys.argv[1:])
