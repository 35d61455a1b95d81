//! `stemflow-standalone`: the plugin and its editor as an application (feature `standalone`).

fn main() -> std::process::ExitCode {
    stemflow::plugin::standalone::main()
}
