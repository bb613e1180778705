"""nurdad's HDF5 jet format: the schema, readers, writers and merging."""

from nurdad.data.schema import (
    COLUMNS,
    REQUIRED,
    SCHEMA_VERSION,
    JetDataset,
    JetFile,
    dataset_info,
    expand_paths,
    merge_files,
    open_dataset,
    write_jets,
)

__all__ = [
    "COLUMNS", "REQUIRED", "SCHEMA_VERSION", "JetDataset", "JetFile", "dataset_info", "expand_paths",
    "merge_files", "open_dataset", "write_jets",
]
