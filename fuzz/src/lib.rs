//! The fuzz targets' shared code: [`entries`] holds what each target
//! feeds its input to. The targets are under `fuzz_targets/`, one per
//! parser of client input; `make fuzz` runs each for a bounded time.

pub mod entries;
