//! Fuzz target `references`: see `entries::references`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| speculative_images_fuzz::entries::references(data));
