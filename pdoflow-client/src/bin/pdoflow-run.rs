//! `pdoflow-run`: the worker and admin command line, with the built-in
//! tasks only (`shell`, `noop`, `sleep`). To add handlers of your own, build
//! a binary like `examples/custom_worker.rs`.

fn main() -> std::process::ExitCode {
    pdoflow_client::cli::main(pdoflow_client::TaskRegistry::new())
}
