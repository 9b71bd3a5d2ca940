"""What a SavedModel's serving graph could do beyond computing: read or write files, run Python.

A SavedModel (a TF Hub stylization module, our exported `stylizer/`) carries no Python,
but its graph is a program of TensorFlow ops, and some ops reach outside the tensors:
`WriteFile` and `ReadFile` take any path, `PyFunc` calls back into Python, a dataset op
opens files. A stylize job calls the module on every image, so the ops reachable from
its signatures and restored functions are read from `saved_model.pb` first, as data,
and a module using any of these is refused unless the user trusts it.

The check reads only the functions a loaded module can run: the signatures and the
object graph's functions. The saver's own functions (`SaveV2`, `RestoreV2`) are not
among them: every SavedModel has them, and loading restores variables without them.
"""

from __future__ import annotations

import os
from pathlib import Path

SAVED_MODEL_FILE = "saved_model.pb"

# Ops that touch the file system, the network or Python. A deny list: every op that does
# compute is allowed, and TF adds compute ops far more often than ops of this kind.
OUTSIDE_OPS = frozenset({
    "ReadFile", "WriteFile", "MatchingFiles", "MatchingFilesDataset", "DeleteFile",
    "PyFunc", "PyFuncStateless", "EagerPyFunc",
    "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice", "MergeV2Checkpoints",
    "ImmutableConst", "LoadAndRemapMatrix",
    "TFRecordDataset", "TFRecordDatasetV2", "FixedLengthRecordDataset", "FixedLengthRecordDatasetV2",
    "TextLineDataset", "SqlDataset", "CSVDataset", "CSVDatasetV2", "LMDBDataset", "SnapshotDataset",
    "SnapshotDatasetV2", "SaveDataset", "SaveDatasetV2", "LoadDataset", "DatasetToTFRecord",
    "CreateSummaryFileWriter", "CreateSummaryDbWriter", "WriteSummary", "WriteRawProtoSummary",
    "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "DebugNanCount", "DebugNumericSummary",
    "DebugNumericSummaryV2", "PrintV2", "InitializeTableFromTextFile", "InitializeTableFromTextFileV2",
    "RpcCall", "Rpc", "TryRpc",
})


class UnsafeSavedModelError(ValueError):
    """A SavedModel whose serving graph could reach outside its tensors."""


class UnreadableSavedModelError(ValueError):
    """No SavedModel protocol buffer could be read there."""


def ops_outside(directory: str | os.PathLike) -> list[str]:
    """The op types in `directory`'s SavedModel that its signatures and restored functions can
    run and that reach outside the tensors (sorted; empty for a module that only computes).

    Raises:
        UnreadableSavedModelError: there is no readable `saved_model.pb`.
    """
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(directory, SAVED_MODEL_FILE)
    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(path.read_bytes())
    except (OSError, ValueError, DecodeError) as exc:
        raise UnreadableSavedModelError(f"{path}: not a readable SavedModel ({exc})") from None
    found: set[str] = set()
    for meta_graph in saved.meta_graphs:
        found |= _reachable_ops(meta_graph) & OUTSIDE_OPS
    return sorted(found)


def _reachable_ops(meta_graph) -> set[str]:
    graph = meta_graph.graph_def
    library = {f.signature.name: f for f in graph.library.function}
    nodes = {n.name: n for n in graph.node}
    functions: list[str] = list(meta_graph.object_graph_def.concrete_functions.keys())
    pending = [tensor.name.split(":")[0].lstrip("^") for signature in meta_graph.signature_def.values()
               for tensor in signature.outputs.values()]
    ops: set[str] = set()
    seen_nodes: set[str] = set()
    while pending:  # the graph's nodes that feed a signature's outputs, and what they call
        name = pending.pop()
        if name in seen_nodes or name not in nodes:
            continue
        seen_nodes.add(name)
        node = nodes[name]
        ops.add(node.op)
        functions += _called(node, library)
        pending += [i.split(":")[0].lstrip("^") for i in node.input]
    seen_functions: set[str] = set()
    while functions:
        name = functions.pop()
        if name in seen_functions or name not in library:
            continue
        seen_functions.add(name)
        for node in library[name].node_def:
            ops.add(node.op)
            functions += _called(node, library)
    return ops


def _called(node, library) -> list[str]:
    """The library functions a node calls: its op itself, or any function-valued attribute."""
    called = [node.op] if node.op in library else []
    for value in node.attr.values():
        if value.HasField("func"):
            called.append(value.func.name)
        called += [f.name for f in value.list.func]
    return called


def check_saved_model(directory: str | os.PathLike) -> None:
    """Raises UnsafeSavedModelError naming the ops, if the module reaches outside its tensors.
    A file that is no SavedModel passes: loading it fails next, with the loader's own message."""
    try:
        found = ops_outside(directory)
    except UnreadableSavedModelError:
        return
    if found:
        raise UnsafeSavedModelError(
            f"the SavedModel at {os.fspath(directory)} runs ops that reach outside its tensors ({', '.join(found)}): "
            "it could read or write files or run Python when called. Stylization modules need none; if you "
            "trust whoever wrote this module, set trust_model_code: true in the spec")
