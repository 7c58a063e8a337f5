// The event path allocates per event (JSON documents, CloudEvents); mimalloc
// makes that markedly cheaper than glibc's allocator (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    switchyard::cli::main()
}
