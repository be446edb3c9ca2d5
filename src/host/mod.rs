//! Host configuration files, one format per file; every edit atomic,
//! idempotent and able to produce a diff.
