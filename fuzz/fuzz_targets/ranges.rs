//! Fuzz target `ranges`: see `entries::ranges`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| speculative_images_fuzz::entries::ranges(data));
