//! The buildset registry server on its own: `buildset-registry --config FILE`.

fn main() {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    args.insert(1, "serve".into());
    std::process::exit(speculative_images::cli::main(args));
}
