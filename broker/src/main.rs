//! `weir-broker`: see `weir_broker::cli` for the flags.

fn main() -> std::process::ExitCode {
    weir_broker::cli::main()
}
