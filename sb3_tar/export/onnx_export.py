"""The exported actor as ONNX, for runtimes other than PyTorch (onnxruntime, TensorRT, ...).

The graph is the actor's dense ``nn.Sequential`` (``DeployedActor.as_sequential()``) exported
with ``torch.onnx.export``, as SB3's documentation exports dense policies, with two additions:
the action is already mapped to the environment's bounds, and every weight matrix that is
smaller stored sparse becomes a ``sparse_initializer`` (values and int64 indices, smaller below a
density of 1/3), which ONNX runtimes densify when they load the model. So the file is small,
and the computation is dense: ONNX has no sparse matrix product that runtimes implement widely.
Needs the ``export`` extra (``pip install "sb3-tar[export]"``: onnx, onnxscript; onnxruntime to run it).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import torch

from sb3_tar.runtime.actor import DeployedActor, load_actor

OBSERVATION = "observation"
ACTION = "action"


def export_onnx(actor: DeployedActor | str | Path, path: str | Path, *, sparse_initializers: bool = True,
                opset_version: int = 18) -> Path:
    """Write an exported actor as ONNX: input ``observation`` (float32, ``(batch, *observation_shape)``),
    output ``action`` (``(batch, *action_shape)``), any batch size.

    :param actor: a ``DeployedActor`` or the path of an exported actor file.
    :param path: the ``.onnx`` file to write (parent folders are created).
    :param sparse_initializers: store weight matrices sparse where that is smaller.
    :param opset_version: the ONNX opset.
    :return: the path written.
    """
    try:
        import onnx
    except ImportError as error:
        raise ImportError("export_onnx needs onnx and onnxscript: pip install \"sb3-tar[export]\"") from error
    if not isinstance(actor, DeployedActor):
        actor = load_actor(actor, kernels="dense")
    module = actor.as_sequential()
    example = torch.zeros(2, *actor.observation_shape)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # the exporter's notes on its own internals (optional torchvision ops)
    # torch writes the weights dense into a side file (<name>.data); the graph is exported in a
    # temporary folder and saved once, self-contained, so no dense copy is left beside the file.
    with tempfile.TemporaryDirectory() as folder:
        exported = Path(folder) / "actor.onnx"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(module, (example,), str(exported), dynamo=True, verbose=False,
                                  opset_version=opset_version, input_names=[OBSERVATION], output_names=[ACTION],
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
        finally:
            exporter_log.setLevel(level)
        model = onnx.load(str(exported))  # the side file's weights are read into the model here
    if sparse_initializers:
        _sparsify_initializers(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _sparsify_initializers(model: object) -> None:
    """Move each float matrix initializer whose sparse form is smaller into ``graph.sparse_initializer``."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    for initializer in list(graph.initializer):
        values = numpy_helper.to_array(initializer)
        if values.ndim != 2 or values.dtype != np.float32:
            continue
        flat = values.reshape(-1)
        kept = np.flatnonzero(flat)
        if kept.size * (4 + 8) >= flat.size * 4:  # float32 values + int64 indices against the dense matrix
            continue
        sparse = helper.make_sparse_tensor(numpy_helper.from_array(flat[kept], initializer.name),
                                           numpy_helper.from_array(kept.astype(np.int64), ""), list(values.shape))
        graph.sparse_initializer.append(sparse)
        graph.initializer.remove(initializer)
