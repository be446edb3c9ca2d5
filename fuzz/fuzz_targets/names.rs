//! Fuzz target `names`: see `entries::names`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| speculative_images_fuzz::entries::names(data));
