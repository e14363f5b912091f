//! Segmented write-ahead log (being written; see the store helper's task).
