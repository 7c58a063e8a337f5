// The event path allocates per event (JSON documents, CloudEvents); mimalloc
// makes that markedly cheaper than glibc's allocator (docs/BENCHMARKS.md).
// Built without transparent huge pages (`no_thp`): with them its first
// arena alone made 28 MiB of the process's resident memory at start.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    switchyard::cli::main()
}
