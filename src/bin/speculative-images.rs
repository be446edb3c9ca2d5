//! The multi-call binary: every Ansible module, the registry server, the CLI.

fn main() {
    std::process::exit(speculative_images::cli::main(std::env::args_os().collect()));
}
