"""Read-only FUSE views of an index: a blob as one file, an archive as a tree."""
