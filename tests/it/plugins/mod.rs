//! WebAssembly plugins: the shipped examples, and hostile ones contained.

mod examples;
mod hostile;
